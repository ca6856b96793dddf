"""DPO pieces on the tiny model: answer log-probs, the reference, precomputed vs live, bad pairs, config."""

import math

import pytest
import torch
from torch import nn

from tunewright.core.errors import DataError
from tunewright.core.modeling import load_model, load_tokenizer
from tunewright.core.records import Message, PreferencePair
from tunewright.demo import domain
from tunewright.train.config import ModelConfig, PeftConfig, TrainConfig, TrainingConfig
from tunewright.train.data import IGNORE
from tunewright.train.distributed import Dist
from tunewright.train.fused_lora import fused_lora
from tunewright.train.loop import Trainer
from tunewright.train.objectives.dpo import (
    Dpo,
    Reference,
    collate_pairs,
    precompute_reference,
    read_pair,
    sequence_logps,
    tokenize_pair,
)
from tunewright.train.peft_adapter import apply_peft
from tunewright.train.recipe import build_model
from tunewright.train.rms_norm import fused_rms_norm
from tunewright.train.trained_positions import last_mlp_where_trained
from tunewright.train.varlen import varlen_attention


def make_pair(k, inc, table, prompt):
    """Chosen: the house format; rejected: the same answer without its escalation line (a pattern that
    generalises to held-out pairs even on the barely pre-trained tiny base)."""
    chosen = domain.answer(inc, table)
    return PreferencePair(
        [Message("system", domain.SYSTEM_PROMPT), Message("user", prompt)],
        [Message("assistant", chosen)],
        [Message("assistant", chosen.rsplit("\n", 1)[0])],
        f"p{k}",
        "test",
    )


@pytest.fixture(scope="module")
def pairs(tiny_base):
    tok = load_tokenizer(tiny_base)
    cases = domain.all_cases()
    step = max(1, len(cases) // 48)
    return tok, [tokenize_pair(tok, make_pair(k, *c), 256) for k, c in enumerate(cases[::step][:48])]


def lora(tiny_base, tok):
    model = apply_peft(load_model(tiny_base, tokenizer=tok), PeftConfig(rank=4, alpha=8))
    torch.manual_seed(0)
    for name, p in model.named_parameters():
        if "lora_B" in name:
            nn.init.normal_(p, std=0.05)
    return model


def plain_logps(model, example):
    """An independent per-sequence forward: log-softmax at every labelled position, summed."""
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([example.input_ids])).logits[0, :-1].float()
    logps = torch.log_softmax(logits, -1)
    return sum(float(logps[t, y]) for t, y in enumerate(example.labels[1:]) if y != IGNORE)


@pytest.mark.parametrize("speedups", [False, True])
def test_answer_logps_equal_a_plain_forward_of_each_sequence(tiny_base, pairs, speedups):
    tok, examples = pairs
    model = lora(tiny_base, tok).eval()
    chunk = examples[:4]
    batch = collate_pairs(chunk)
    with torch.no_grad(), varlen_attention(model):
        if speedups:
            with fused_lora(model), last_mlp_where_trained(model), fused_rms_norm(model):
                sums, counts = sequence_logps(model, batch, 8)
        else:
            sums, counts = sequence_logps(model, batch, 8)
    sides = [e for p in chunk for e in (p.chosen, p.rejected)]
    assert counts.tolist() == [e.targets for e in sides]
    assert sums.tolist() == pytest.approx([plain_logps(model, e) for e in sides], rel=1e-5)


@pytest.mark.parametrize("speedups", [False, True])
def test_the_reference_with_the_adapter_disabled_is_the_base_model(tiny_base, pairs, speedups):
    tok, examples = pairs
    model, base = lora(tiny_base, tok), load_model(tiny_base, tokenizer=tok).eval()
    batch = collate_pairs(examples[:4])
    reference = Reference(model, "disabled")
    with varlen_attention(model), varlen_attention(base), torch.no_grad():
        expected, _ = sequence_logps(base, batch, 8)
        policy, _ = sequence_logps(model, batch, 8)
        if speedups:
            with fused_lora(model), last_mlp_where_trained(model), fused_rms_norm(model):
                got, _ = reference(batch, 8)
        else:
            got, _ = reference(batch, 8)
    assert got.tolist() == pytest.approx(expected.tolist(), rel=1e-5)
    assert policy.tolist() != pytest.approx(expected.tolist(), rel=1e-3)  # the adapter does change them


def dpo_config(tiny_base, **overrides):
    training = {"learning_rate": 5e-3, "max_steps": 3, "micro_batch_size": 4, "eval_every": 100, "seed": 1}
    return TrainConfig(
        objective="dpo",
        model=ModelConfig(name_or_path=str(tiny_base), max_seq_length=256),
        peft=PeftConfig(rank=8, alpha=16),
        training=TrainingConfig(**{**training, **overrides}),
    )


def losses_with(tiny_base, tok, units, precompute: bool):
    cfg = dpo_config(tiny_base)
    torch.manual_seed(0)
    model = build_model(cfg, str(tiny_base), tok, Dist())
    units = [type(u)(u.chosen, u.rejected, u.id) for u in units]  # fresh: no reference attached yet
    reference = Reference(model, "disabled")
    if precompute:
        precompute_reference(reference, units, 4, None, torch.device("cpu"))
    rows = []
    objective = Dpo(cfg, tok)
    objective.reference = reference
    Trainer(model, cfg, objective, units, [], log=rows.append).run()
    return [r["loss"] for r in rows], [r["reward_accuracy"] for r in rows]


def test_precomputed_and_live_references_give_the_same_losses(tiny_base, pairs):
    tok, examples = pairs
    live, live_acc = losses_with(tiny_base, tok, examples[:16], precompute=False)
    pre, pre_acc = losses_with(tiny_base, tok, examples[:16], precompute=True)
    assert live[0] == pytest.approx(math.log(2), rel=1e-6)  # policy == reference before the first update
    assert pre == pytest.approx(live, rel=1e-5)
    assert pre_acc[1:] == live_acc[1:]  # step 1: every reward is ~0, so its accuracy is rounding noise


def test_dpo_raises_reward_accuracy_on_held_out_pairs(tiny_base, pairs):
    tok, examples = pairs
    cfg = dpo_config(tiny_base, max_steps=12, eval_every=12, learning_rate=2e-3)
    torch.manual_seed(0)
    model = build_model(cfg, str(tiny_base), tok, Dist())
    rows = []
    objective = Dpo(cfg, tok)
    objective.reference = Reference(model, "disabled")
    Trainer(model, cfg, objective, examples[:32], examples[32:], log=rows.append).run()
    first, last = (r for r in (rows[0], rows[-1]))
    assert first["val_loss"] == pytest.approx(math.log(2), rel=1e-6) and first["val_reward_accuracy"] == 0.0
    assert last["val_loss"] < 0.3 and last["val_reward_accuracy"] >= 0.9


def test_bad_pairs_are_named():
    prompt = [{"role": "user", "content": "q"}]
    same = {"prompt": prompt, "chosen": "a", "rejected": "a"}
    with pytest.raises(DataError, match="x:3: chosen and rejected are the same answer"):
        read_pair(same, "x:3")
    with pytest.raises(DataError, match="x:4: a conversation, not a preference pair"):
        read_pair({"messages": [*prompt, {"role": "assistant", "content": "a"}]}, "x:4")
    with pytest.raises(DataError, match="x:5: preference pair is missing rejected"):
        read_pair({"prompt": prompt, "chosen": "a"}, "x:5")


def test_config_errors_say_what_to_write(tiny_base):
    base = {"model": {"name_or_path": str(tiny_base)}}
    with pytest.raises(ValueError, match="write `objective: sft` and `adapter: none` instead"):
        TrainConfig.model_validate({**base, "method": "sft"})
    with pytest.raises(ValueError, match=r"dpo\.precompute_ref_logps: true"):
        TrainConfig.model_validate({**base, "objective": "dpo", "adapter": "none"})
    with pytest.raises(ValueError, match=r"data\.packing applies to objective: sft"):
        TrainConfig.model_validate({**base, "objective": "dpo", "data": {"packing": True}})
    ok = TrainConfig.model_validate({**base, "objective": "dpo", "adapter": "none", "dpo": {"reference_copy": True}})
    assert ok.dpo.beta == 0.1 and ok.dpo.loss == "sigmoid"
