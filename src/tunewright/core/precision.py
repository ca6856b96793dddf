"""Which floating-point type a model runs in: `dtype: auto | float32 | bfloat16 | float16`.

`auto` is what vLLM's `--dtype auto` means, bounded by the hardware: the model's own
`torch_dtype` (its `config.json`) when the device computes that type fast, else float32. A
CPU computes bfloat16 fast when it has bfloat16 dot-product instructions (AVX-512 BF16 or
AMX-BF16: oneDNN then runs bf16 GEMMs natively; without them PyTorch emulates bf16 and is
slower than fp32) and float16 with AVX-512 FP16 or AMX-FP16; a CUDA GPU computes bfloat16
when PyTorch says it supports it, and float16 always. The flags are read from
`/proc/cpuinfo` (Linux); elsewhere a CPU is taken to compute neither fast.

Where a model runs is `device: auto | cpu | cuda | cuda:N`; `auto` is the first GPU when
PyTorch sees one, else the CPU, and `auto` dtypes are then resolved for that device.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import torch

from tunewright.core.errors import UserError

DTYPES = ("float32", "bfloat16", "float16")
CHOICES = ("auto", *DTYPES)
DEVICE_PATTERN = r"^(auto|cpu|cuda(:\d+)?)$"  # what a `device` setting may say
_CPU_FLAGS = {"bfloat16": ("avx512_bf16", "amx_bf16"), "float16": ("avx512_fp16", "amx_fp16")}


@cache
def _cpu_flags() -> frozenset[str]:
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:
        return frozenset()
    line = next((ln for ln in text.splitlines() if ln.startswith("flags")), "")
    return frozenset(line.partition(":")[2].split())


def fast_dtypes(device: str = "cpu") -> list[str]:
    """The types `device` computes at full speed: float32 always, and bfloat16 / float16 where it has them."""
    if device.startswith("cuda"):
        return ["float32", *(["bfloat16"] if torch.cuda.is_bf16_supported() else []), "float16"]
    flags = _cpu_flags()
    return ["float32", *(t for t, needs in _CPU_FLAGS.items() if flags & set(needs))]


def model_dtype(model_dir: str | Path) -> str | None:
    """The dtype a model directory's `config.json` declares (`torch_dtype`, or `dtype` in newer files)."""
    path = Path(model_dir) / "config.json"
    if not path.is_file():
        return None
    config = json.loads(path.read_text(encoding="utf-8"))
    found = config.get("torch_dtype") or config.get("dtype")
    return found if found in DTYPES else None


def resolve_dtype(requested: str, model_dir: str | Path, device: str = "cpu") -> str:
    """The dtype to run the model at `model_dir` in: `requested`, or for `auto` the model's own type when
    `device` computes it fast, else float32."""
    if requested != "auto":
        return requested
    declared = model_dtype(model_dir)
    return declared if declared in fast_dtypes(device) else "float32"


def slow_dtype_warning(dtype: str, device: str = "cpu") -> str | None:
    """Why running in `dtype` on `device` will be slow (it has no units for it), or None where it is not."""
    if dtype == "float32" or dtype in fast_dtypes(device):
        return None
    units = " or ".join(_CPU_FLAGS.get(dtype, ())) if not device.startswith("cuda") else f"{dtype} support"
    return (
        f"{dtype} on this {device.split(':')[0].upper()} without {units}: PyTorch emulates it, "
        "many times slower than float32 (use float32, or auto)"
    )


def resolve_device(requested: str, key: str = "device") -> str:
    """The device to run on: `requested`, or for `auto` the first CUDA GPU when there is one, else `cpu`.
    A GPU asked for where PyTorch sees none is an error that names the setting `key`."""
    if requested == "auto":
        return "cuda:0" if torch.cuda.is_available() else "cpu"
    if requested == "cpu":
        return requested
    if requested == "cuda" or (requested.startswith("cuda:") and requested[5:].isdigit()):
        index = int(requested[5:] or 0)
        found = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if index >= found:
            raise UserError(
                f"{key}: {requested} asked for, but PyTorch sees {found} CUDA GPU(s) here (use auto or cpu)"
            )
        return f"cuda:{index}"
    raise UserError(f"{key}: {requested!r} is not auto, cpu, cuda or cuda:N")
