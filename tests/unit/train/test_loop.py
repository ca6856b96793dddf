import copy
import itertools
import math

import pytest
import torch
from lm_reference import count_targets, summed_lm_loss

from tunewright.core.errors import UserError
from tunewright.core.modeling import load_model, load_tokenizer
from tunewright.core.records import to_conversation
from tunewright.demo import domain
from tunewright.train.config import ModelConfig, PeftConfig, TrainConfig, TrainingConfig
from tunewright.train.data import collate, tokenize_conversation
from tunewright.train.distributed import Dist
from tunewright.train.loop import Batches, Trainer, make_scheduler
from tunewright.train.losses import model_loss
from tunewright.train.objectives.sft import Sft, validation_loss
from tunewright.train.packing import collate_packed, pack
from tunewright.train.peft_adapter import apply_peft
from tunewright.train.recipe import build_model
from tunewright.train.varlen import NAME as VARLEN
from tunewright.train.varlen import varlen_attention


@pytest.fixture(scope="module")
def setup(tiny_base):
    tok = load_tokenizer(tiny_base)
    cases = domain.all_cases()[:40]
    examples = [
        tokenize_conversation(tok, to_conversation({"prompt": p, "response": domain.answer(i, t)}, "s", str(k)), 256)
        for k, (i, t, p) in enumerate(cases)
    ]
    return tok, examples


def config(tiny_base, adapter="lora", **training):
    t = {"learning_rate": 4e-3, "max_steps": 4, "micro_batch_size": 4, "eval_every": 100, "seed": 1, **training}
    return TrainConfig(
        adapter=adapter,
        model=ModelConfig(name_or_path=str(tiny_base), max_seq_length=256),
        peft=PeftConfig(rank=8, alpha=16),
        training=TrainingConfig(**t),
    )


def losses(rows):
    return [r["loss"] for r in rows if "loss" in r]


def train_losses(cfg, tok, units):
    """Per-step training losses of a fresh model (seeded) trained on `units`."""
    torch.manual_seed(0)
    rows = []
    model = build_model(cfg, cfg.model.name_or_path, tok, Dist())
    Trainer(model, cfg, Sft(cfg, tok), units, [], log=rows.append).run()
    return losses(rows)


def grads_after(model, batches, targets):
    model.zero_grad()
    for b in batches:
        logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
        loss, _ = summed_lm_loss(logits, b["labels"])
        (loss / targets).backward()
    return [p.grad.clone() for p in model.parameters() if p.grad is not None]


def test_accumulation_1x8_equals_8x1_gradients(tiny_base, setup):
    tok, examples = setup
    model = load_model(tiny_base, tokenizer=tok)
    eight = examples[:8]
    targets = sum(count_targets(collate([e], tok.pad_token_id)) for e in eight)
    one_batch = grads_after(model, [collate(eight, tok.pad_token_id)], targets)
    micro = grads_after(model, [collate([e], tok.pad_token_id) for e in eight], targets)
    for a, b in zip(one_batch, micro, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_accumulation_and_padding_free_give_the_same_steps(tiny_base, setup):
    tok, examples = setup
    runs = []
    for micro, accum, free in ((8, 1, False), (1, 8, False), (8, 1, True)):
        cfg = config(tiny_base, micro_batch_size=micro, gradient_accumulation_steps=accum, padding_free=free)
        runs.append(train_losses(cfg, tok, examples[:32]))
    assert runs[0] == pytest.approx(runs[1], rel=1e-4)
    assert runs[0] == pytest.approx(runs[2], rel=1e-4)


@pytest.mark.parametrize("adapter", ["none", "lora"])
def test_speedups_give_the_same_steps(tiny_base, setup, adapter):
    tok, examples = setup
    on, off = (train_losses(config(tiny_base, adapter, speedups=f), tok, examples[:32]) for f in (True, False))
    assert on == pytest.approx(off, rel=1e-4)


@pytest.mark.parametrize("adapter", ["none", "lora", "dora"])
def test_each_adapter_kind_reduces_validation_loss(tiny_base, setup, adapter):
    tok, examples = setup
    lr = 1e-3 if adapter == "none" else 4e-3
    cfg = config(tiny_base, adapter, learning_rate=lr, max_steps=20, micro_batch_size=8, eval_every=20)
    model = build_model(cfg, str(tiny_base), tok, Dist())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    assert (trainable == total) == (adapter == "none")
    rows = []
    summary = Trainer(model, cfg, Sft(cfg, tok), examples[:32], examples[32:], log=rows.append).run()
    assert summary["final_val_loss"] < summary["initial_val_loss"] * 0.8
    assert [r["step"] for r in rows if "loss" in r] == list(range(1, 21))
    assert all(r["tokens_per_s"] > 0 for r in rows if "loss" in r)


@pytest.mark.parametrize("attention", ["transformers-mask", "varlen"])
def test_packed_loss_equals_unpacked_per_example(tiny_base, setup, attention):
    tok, examples = setup
    model = load_model(tiny_base, tokenizer=tok).eval()
    if attention == "varlen":
        model.set_attn_implementation(VARLEN)
    group = examples[:6]
    rows = pack(group, 256)
    assert len(rows) < len(group)
    with torch.no_grad():
        unpacked = []
        for e in group:
            b = collate([e], tok.pad_token_id)
            unpacked.append(
                summed_lm_loss(model(**{k: b[k] for k in ("input_ids", "attention_mask")}).logits, b["labels"])[0]
            )
        b = collate_packed(rows, tok.pad_token_id)
        logits = model(input_ids=b["input_ids"], position_ids=b["position_ids"], use_cache=False).logits
        packed, n = summed_lm_loss(logits, b["labels"])
        # per example: each example's slice of the packed logits equals its own logits
        at = 0
        row0 = rows[0]
        for e in row0.examples:
            own = model(input_ids=torch.tensor([e.input_ids])).logits[0]
            torch.testing.assert_close(logits[0, at : at + len(e.input_ids)], own, rtol=1e-4, atol=1e-4)
            at += len(e.input_ids)
    assert n == sum(e.targets for e in group)
    torch.testing.assert_close(packed, torch.stack(unpacked).sum(), rtol=1e-5, atol=1e-3)


def test_batches_are_addressable_by_cursor_and_cover_every_unit():
    b = Batches(list(range(10)), 4, seed=3)
    first = [b.get(c) for c in range(5)]
    assert [b.get(c) for c in (4, 2, 0)] == [first[4], first[2], first[0]]
    flat = [x for batch in first for x in batch]
    assert sorted(flat[:10]) == list(range(10)) and sorted(flat[10:20]) == list(range(10))


def test_validation_loss_matches_base(tiny_base, setup):
    tok, examples = setup
    base = load_model(tiny_base, tokenizer=tok)
    again = validation_loss(base, examples[32:], 3, tok.pad_token_id)
    assert validation_loss(base, examples[32:], 8, tok.pad_token_id) == pytest.approx(again, rel=1e-5)


def test_unknown_target_module_is_a_user_error(tiny_base, setup):
    tok, _ = setup
    model = load_model(tiny_base, tokenizer=tok)
    with pytest.raises(UserError, match=r"qkv_proj not found in the model; linear modules are: .*q_proj"):
        apply_peft(copy.deepcopy(model), PeftConfig(target_modules=["q_proj", "qkv_proj"]))


def test_schedules():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = make_scheduler(opt, "cosine", warmup_steps=2, total_steps=10)
    lrs = []
    for _ in range(10):
        lrs.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.5)
    assert lrs[1] == pytest.approx(1.0)
    assert lrs[2] == pytest.approx(1.0)
    assert lrs[-1] < 0.05
    assert all(a >= b for a, b in itertools.pairwise(lrs[1:]))


@pytest.mark.parametrize("adapter", ["lora", "none"])
def test_saved_output_reloads_with_identical_logits(tiny_base, setup, tmp_path, adapter):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    tok, examples = setup
    cfg = config(tiny_base, adapter, max_steps=3)
    torch.manual_seed(0)
    model = build_model(cfg, str(tiny_base), tok, Dist())
    Trainer(model, cfg, Sft(cfg, tok), examples[:16], []).run()
    model.save_pretrained(tmp_path / "out")
    if adapter == "lora":
        reloaded = PeftModel.from_pretrained(load_model(tiny_base, tokenizer=tok), str(tmp_path / "out"))
    else:
        reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    batch = collate(examples[16:20], tok.pad_token_id)
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    with torch.no_grad():
        assert torch.equal(model.eval()(**inputs).logits, reloaded.eval()(**inputs).logits)


def test_loss_on_kept_logits_equals_full_loss(tiny_base, setup):
    tok, examples = setup
    model = load_model(tiny_base, tokenizer=tok).eval()
    batch = collate(examples[:5], tok.pad_token_id)
    with torch.no_grad():
        full, n = summed_lm_loss(
            model(**{k: batch[k] for k in ("input_ids", "attention_mask")}).logits, batch["labels"]
        )
        kept, m = model_loss(model, batch)
    assert n == m
    torch.testing.assert_close(kept, full, rtol=1e-6, atol=1e-4)


def test_varlen_attention_is_restored_after_training(tiny_base, setup):
    tok, _ = setup
    model = load_model(tiny_base, tokenizer=tok)
    before = model.config._attn_implementation
    with varlen_attention(model):
        assert model.config._attn_implementation == VARLEN
    assert model.config._attn_implementation == before


def test_early_stopping_after_patience_evaluations_without_improvement(tiny_base, setup):
    tok, examples = setup
    cfg = config(tiny_base, learning_rate=1e-12, max_steps=10, eval_every=2, early_stopping_patience=1)
    torch.manual_seed(0)
    model = build_model(cfg, str(tiny_base), tok, Dist())
    summary = Trainer(model, cfg, Sft(cfg, tok), examples[:16], examples[32:36]).run()
    assert summary["stopped_early"] and summary["steps"] == 4


def test_gradient_checkpointing_gives_the_same_losses(tiny_base, setup):
    tok, examples = setup
    runs = []
    for checkpointing in (False, True):
        cfg = config(tiny_base, max_steps=3)
        cfg.model.gradient_checkpointing = checkpointing
        runs.append(train_losses(cfg, tok, examples[:16]))
    assert runs[1] == pytest.approx(runs[0], rel=1e-5)


def test_bfloat16_trains_under_autocast(tiny_base, setup):
    tok, examples = setup
    cfg = config(tiny_base, max_steps=3)
    cfg.model.dtype = "bfloat16"
    run = train_losses(cfg, tok, examples[:16])
    assert all(math.isfinite(x) for x in run) and run[-1] < run[0]


@pytest.mark.parametrize("adapter", ["lora", "none"])
def test_mixed_precision_computes_in_bf16_and_keeps_fp32_weights(tiny_base, setup, adapter):
    """training.mixed_precision: bfloat16 over float32 weights: the forward's matmuls run in bf16 (seen
    on a hook), every weight and its optimizer state stay fp32, and the loss falls as in fp32."""
    tok, examples = setup
    lr = 4e-3 if adapter == "lora" else 3e-4
    cfg = config(tiny_base, adapter=adapter, learning_rate=lr, max_steps=3, mixed_precision="bfloat16")
    assert cfg.compute_dtype() == "bfloat16"
    torch.manual_seed(0)
    model = build_model(cfg, cfg.model.name_or_path, tok, Dist())
    seen = set()
    mlp = next(m for n, m in model.named_modules() if n.endswith("layers.0.mlp"))
    handle = mlp.register_forward_hook(lambda m, a, out: seen.add(out.dtype) if torch.is_grad_enabled() else None)
    rows = []
    trainer = Trainer(model, cfg, Sft(cfg, tok), examples[:16], [], log=rows.append)
    trainer.run()
    handle.remove()
    assert seen == {torch.bfloat16}
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    states = [v for s in trainer.optimizer.state.values() for v in s.values() if torch.is_tensor(v) and v.dim()]
    assert states and {v.dtype for v in states} == {torch.float32}
    run = losses(rows)
    assert all(math.isfinite(x) for x in run) and run[-1] < run[0]
    fp32 = train_losses(config(tiny_base, adapter=adapter, learning_rate=lr, max_steps=3), tok, examples[:16])
    assert run == pytest.approx(fp32, rel=0.05)


def test_mixed_precision_needs_float32_weights(tiny_base):
    with pytest.raises(ValueError, match=r"training\.mixed_precision: bfloat16 .* needs model\.dtype: float32"):
        TrainConfig(
            model=ModelConfig(name_or_path=str(tiny_base), dtype="bfloat16"),
            training=TrainingConfig(mixed_precision="bfloat16"),
        )
