"""The same recipe on one process or under `torchrun`: DDP or FSDP2, data sharded by rank.

`torchrun --nproc-per-node N` sets RANK / WORLD_SIZE / LOCAL_RANK; with more than one
process we join the process group (NCCL on GPUs, gloo on CPU) and wrap the model with
DDP, or shard it with FSDP2's `fully_shard` (every decoder layer, then the root) for
models that do not fit one device. Every rank draws the same global micro-batch and
trains on its slice, so a run with N processes and micro-batch m sees exactly the data
of one process with micro-batch N*m. Both wrappers average gradients across ranks; the
loop multiplies each rank's loss by N and divides by the global target-token count, so
the gradient is the single-process one.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from tunewright.core.errors import UserError

CPU = torch.device("cpu")


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = CPU

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def init_distributed(backend: str = "auto") -> Dist:
    """Join the torchrun process group when there is one; otherwise a single-process `Dist`."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    if world <= 1:
        return Dist(device=device)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if backend == "auto":
        backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend)
    return Dist(rank, world, local_rank, device)


def shutdown(d: Dist) -> None:
    if d.active and dist.is_initialized():
        dist.destroy_process_group()


def wrap(model: torch.nn.Module, d: Dist, strategy: str) -> torch.nn.Module:
    """DDP or FSDP2 around the model when distributed; the model itself otherwise."""
    if not d.active:
        return model
    if strategy == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        ids = [d.local_rank] if d.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)
    from torch.distributed.fsdp import fully_shard

    layers = [m for m in model.modules() if type(m).__name__.endswith("DecoderLayer")]
    if not layers:
        raise UserError("fsdp2 shards decoder layers; this model has no module named *DecoderLayer")
    for layer in layers:
        fully_shard(layer)
    fully_shard(model)
    return model


def is_sharded(model: torch.nn.Module) -> bool:
    """Whether FSDP2 shards the model's parameters."""
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "no_sync") and hasattr(model, "module") else model


@contextlib.contextmanager
def no_grad_sync(model: torch.nn.Module, skip: bool) -> Iterator[None]:
    """Skip the gradient all-reduce for micro-batches before the last one of a step."""
    if not skip:
        yield
    elif hasattr(model, "no_sync"):
        with model.no_sync():
            yield
    elif hasattr(model, "set_requires_gradient_sync"):
        model.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            model.set_requires_gradient_sync(True)
    else:
        yield


def all_sum(values: list[float], d: Dist) -> list[float]:
    """Element-wise sum across ranks (a no-op on one process)."""
    if not d.active:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=d.device)
    dist.all_reduce(t)
    return t.tolist()


def gather_objects(obj: Any, d: Dist) -> list[Any]:
    if not d.active:
        return [obj]
    out: list[Any] = [None] * d.world
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, d: Dist) -> Any:
    if not d.active:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def full_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The whole model's state as full CPU tensors (a collective: every rank must call it)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
