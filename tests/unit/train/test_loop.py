import copy
import itertools

import pytest
import torch

from tunewright.core.errors import UserError
from tunewright.core.modeling import load_model, load_tokenizer
from tunewright.core.records import to_conversation
from tunewright.demo import domain
from tunewright.train.config import PeftConfig, TrainingConfig
from tunewright.train.data import collate, tokenize_conversation
from tunewright.train.loop import make_scheduler, train_loop, validation_loss
from tunewright.train.losses import summed_lm_loss
from tunewright.train.peft_adapter import apply_peft


@pytest.fixture(scope="module")
def setup(tiny_base):
    tok = load_tokenizer(tiny_base)
    cases = domain.all_cases()[:40]
    examples = [
        tokenize_conversation(tok, to_conversation({"prompt": p, "response": domain.answer(i, t)}, "s", str(k)), 256)
        for k, (i, t, p) in enumerate(cases)
    ]
    return tok, examples


def grads_after(model, batches, targets):
    model.zero_grad()
    for b in batches:
        logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
        loss, _ = summed_lm_loss(logits, b["labels"])
        (loss / targets).backward()
    return [p.grad.clone() for p in model.parameters() if p.grad is not None]


def test_accumulation_1x8_equals_8x1(tiny_base, setup):
    tok, examples = setup
    model = load_model(tiny_base, tokenizer=tok)
    eight = examples[:8]
    targets = sum(int((collate([e], tok.pad_token_id)["labels"][:, 1:] != -100).sum()) for e in eight)
    one_batch = grads_after(model, [collate(eight, tok.pad_token_id)], targets)
    micro = grads_after(model, [collate([e], tok.pad_token_id) for e in eight], targets)
    for a, b in zip(one_batch, micro, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_lora_training_reduces_validation_loss(tiny_base, setup):
    tok, examples = setup
    model = apply_peft(load_model(tiny_base, tokenizer=tok), PeftConfig(rank=8, alpha=16))
    cfg = TrainingConfig(learning_rate=4e-3, max_steps=25, micro_batch_size=8, eval_every=25, seed=1)
    rows = []
    summary = train_loop(model, examples[:32], examples[32:], cfg, tok.pad_token_id, rows.append)
    assert summary["final_val_loss"] < summary["initial_val_loss"] * 0.8
    assert [r["step"] for r in rows if "loss" in r] == list(range(1, 26))
    assert all(r["tokens_per_s"] > 0 for r in rows if "loss" in r)
    base = load_model(tiny_base, tokenizer=tok)
    assert validation_loss(base, examples[32:], 8, tok.pad_token_id) == pytest.approx(summary["initial_val_loss"])


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
