"""Preference objectives over per-sequence log-probabilities: sigmoid (DPO), IPO, robust, hinge.

Inputs are the summed log-probabilities of each completion's tokens under the policy and
the reference, for the chosen and the rejected answer of each pair. With
h = (log pi(chosen) - log ref(chosen)) - (log pi(rejected) - log ref(rejected)), beta and
label smoothing eps, the per-pair losses are the ones TRL documents for `DPOTrainer`:

- sigmoid (Rafailov et al.): -(1 - eps) log s(beta h) - eps log s(-beta h)  (eps > 0: conservative DPO)
- robust (Chowdhury et al.): (-(1 - eps) log s(beta h) + eps log s(-beta h)) / (1 - 2 eps)
- hinge (SLiC / RSO): max(0, 1 - beta h)
- ipo (Azar et al.): (h - 1 / (2 beta))^2, on log-probabilities averaged per token, as TRL does

The implicit rewards are beta times each answer's log-ratio; accuracy is the share of pairs
whose chosen reward is higher. Losses are returned per pair (the training loop sums and
divides by the pairs of the whole optimiser step, so accumulation changes nothing).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

LOSSES = ("sigmoid", "ipo", "robust", "hinge")


@dataclass
class PairLogps:
    """Summed completion log-probabilities per pair, and the completion lengths in tokens."""

    chosen: torch.Tensor
    rejected: torch.Tensor
    chosen_tokens: torch.Tensor
    rejected_tokens: torch.Tensor


@dataclass
class PreferenceOutput:
    losses: torch.Tensor  # per pair
    chosen_rewards: torch.Tensor
    rejected_rewards: torch.Tensor


def preference_losses(
    policy: PairLogps, reference: PairLogps, beta: float, loss: str = "sigmoid", label_smoothing: float = 0.0
) -> PreferenceOutput:
    """Per-pair losses and implicit rewards of `loss` (see the module docstring)."""
    if loss not in LOSSES:
        raise ValueError(f"unknown preference loss {loss!r}; expected one of {', '.join(LOSSES)}")
    pc, pr, rc, rr = policy.chosen, policy.rejected, reference.chosen, reference.rejected
    if loss == "ipo":
        pc, rc = pc / policy.chosen_tokens, rc / reference.chosen_tokens
        pr, rr = pr / policy.rejected_tokens, rr / reference.rejected_tokens
    chosen_ratio, rejected_ratio = pc - rc, pr - rr
    h = chosen_ratio - rejected_ratio
    eps = label_smoothing
    if loss == "sigmoid":
        losses = -(1 - eps) * F.logsigmoid(beta * h) - eps * F.logsigmoid(-beta * h)
    elif loss == "robust":
        losses = (-(1 - eps) * F.logsigmoid(beta * h) + eps * F.logsigmoid(-beta * h)) / (1 - 2 * eps)
    elif loss == "hinge":
        losses = torch.relu(1 - beta * h)
    else:
        losses = (h - 1 / (2 * beta)) ** 2
    return PreferenceOutput(losses, beta * chosen_ratio.detach(), beta * rejected_ratio.detach())
