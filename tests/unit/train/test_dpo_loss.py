"""Each preference loss against an independent implementation of TRL's documented formulas."""

import math

import pytest
import torch

from tunewright.train.dpo_loss import PairLogps, preference_losses

POLICY = PairLogps(
    torch.tensor([-12.5, -30.25, -7.0, -55.5], dtype=torch.float32),
    torch.tensor([-14.0, -29.0, -9.5, -50.0], dtype=torch.float32),
    torch.tensor([5.0, 12.0, 3.0, 20.0]),
    torch.tensor([6.0, 11.0, 4.0, 18.0]),
)
REFERENCE = PairLogps(
    torch.tensor([-13.0, -30.0, -8.0, -54.0], dtype=torch.float32),
    torch.tensor([-13.5, -29.5, -9.0, -51.0], dtype=torch.float32),
    POLICY.chosen_tokens,
    POLICY.rejected_tokens,
)


def logsigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x)) if x >= 0 else x - math.log1p(math.exp(x))


def expected(loss: str, beta: float, eps: float) -> list[float]:
    """TRL's per-pair formulas, element by element in plain Python floats."""
    out = []
    for i in range(4):
        pc, pr = float(POLICY.chosen[i]), float(POLICY.rejected[i])
        rc, rr = float(REFERENCE.chosen[i]), float(REFERENCE.rejected[i])
        if loss == "ipo":  # TRL averages log-probs over the answer's tokens for IPO
            nc, nr = float(POLICY.chosen_tokens[i]), float(POLICY.rejected_tokens[i])
            pc, rc, pr, rr = pc / nc, rc / nc, pr / nr, rr / nr
        h = (pc - pr) - (rc - rr)
        if loss == "sigmoid":
            out.append(-logsigmoid(beta * h) * (1 - eps) - logsigmoid(-beta * h) * eps)
        elif loss == "robust":
            out.append((-logsigmoid(beta * h) * (1 - eps) + logsigmoid(-beta * h) * eps) / (1 - 2 * eps))
        elif loss == "hinge":
            out.append(max(0.0, 1 - beta * h))
        else:
            out.append((h - 1 / (2 * beta)) ** 2)
    return out


@pytest.mark.parametrize(
    ("loss", "beta", "eps"),
    [("sigmoid", 0.1, 0.0), ("sigmoid", 0.5, 0.2), ("robust", 0.1, 0.1), ("hinge", 0.3, 0.0), ("ipo", 0.1, 0.0)],
)
def test_each_loss_equals_the_documented_formula(loss, beta, eps):
    out = preference_losses(POLICY, REFERENCE, beta, loss, eps)
    assert out.losses.tolist() == pytest.approx(expected(loss, beta, eps), rel=1e-6, abs=1e-6)
    if loss != "ipo":
        chosen = [beta * (float(POLICY.chosen[i]) - float(REFERENCE.chosen[i])) for i in range(4)]
        rejected = [beta * (float(POLICY.rejected[i]) - float(REFERENCE.rejected[i])) for i in range(4)]
        assert out.chosen_rewards.tolist() == pytest.approx(chosen, abs=1e-6)
        assert out.rejected_rewards.tolist() == pytest.approx(rejected, abs=1e-6)


def test_the_gradient_pushes_chosen_up_and_rejected_down():
    chosen = POLICY.chosen.clone().requires_grad_(True)
    rejected = POLICY.rejected.clone().requires_grad_(True)
    policy = PairLogps(chosen, rejected, POLICY.chosen_tokens, POLICY.rejected_tokens)
    preference_losses(policy, REFERENCE, 0.1).losses.sum().backward()
    assert (chosen.grad < 0).all() and (rejected.grad > 0).all()  # descent raises chosen, lowers rejected


def test_an_unknown_loss_is_named():
    with pytest.raises(ValueError, match="unknown preference loss 'kto'"):
        preference_losses(POLICY, REFERENCE, 0.1, "kto")
