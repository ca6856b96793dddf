"""The autocast a training run computes under: none in float32, else the run's compute dtype.

One place for the loop's forward passes and the DPO reference's precomputed log-probs, so a
cached reference is scored in the same precision the policy is trained in.
"""

from __future__ import annotations

import contextlib

import torch

from tunewright.core.modeling import DTYPES


def autocast_for(device: torch.device, dtype: str) -> contextlib.AbstractContextManager:
    """`torch.autocast` on `device` to `dtype` (bfloat16 / float16); a no-op for float32."""
    if dtype == "float32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=DTYPES[dtype])
