"""Where the tasks of a sharded curation run: in this process, or on a Ray cluster.

`InProcess` runs tasks one after another (a Slurm array task runs one; the job that ends a
Slurm curation runs whatever is left). `RayTasks` runs each task as a Ray task with one CPU,
on the cluster at `scale.ray_address` or on a local one it starts (and stops). Ray is an
optional extra, imported only here. A task that fails stops the stage with the task's own
message; tasks that finished keep their completion records, so the same command resumes.
"""

from __future__ import annotations

import socket
from types import TracebackType
from typing import Any
from urllib.parse import urlparse

from tunewright.core.errors import UserError, WorkFailed
from tunewright.core.progress import progress_bar
from tunewright.curate.config import ScaleConfig
from tunewright.curate.shards.job import Job
from tunewright.curate.shards.tasks import run_task

RAY_HINT = "executor ray needs Ray, an optional extra: pip install 'tunewright[ray]'"
SLURM_WORLD = 8
OBJECT_STORE = 256 * 2**20  # a local cluster ships only the job description through it


class InProcess:
    """Run every task in this process, in order."""

    def world_size(self, scale: ScaleConfig) -> int:
        return scale.world_size or SLURM_WORLD

    def run(self, job: Job, stage: str, tasks: int, what: str) -> dict[str, int]:
        counts = {"ran": 0, "reused": 0}
        with progress_bar(f"{what}: {stage}", total=tasks) as advance:
            for index in range(tasks):
                counts[run_task(job, stage, index)] += 1
                advance(1)
        return counts

    def __enter__(self) -> InProcess:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        return None


def _reachable(address: str) -> None:
    """Fail fast when nothing listens at a host:port (or ray://host:port) address."""
    parsed = urlparse(address if "://" in address else f"tcp://{address}")
    if not parsed.hostname or not parsed.port:
        raise UserError(f"scale.ray_address {address!r}: expected host:port, ray://host:port or auto")
    try:
        socket.create_connection((parsed.hostname, parsed.port), timeout=3).close()
    except OSError as exc:
        raise UserError(f"cannot reach the Ray cluster at {address}: {exc}") from None


def _ray_task(job: Job, stage: str, index: int) -> str:
    return run_task(job, stage, index)


class RayTasks:
    """Run tasks on a Ray cluster: the one at `scale.ray_address`, one already joined, or a local one."""

    def __init__(self, scale: ScaleConfig) -> None:
        try:
            import ray
        except ImportError:
            raise UserError(RAY_HINT) from None
        self.ray, self.owned = ray, False
        if not ray.is_initialized():
            address = scale.ray_address
            if address and address != "auto":
                _reachable(address)
            try:
                if address:
                    ray.init(address=address, log_to_driver=False, logging_level="warning")
                else:
                    ray.init(
                        num_cpus=scale.ray_workers,
                        include_dashboard=False,
                        log_to_driver=False,
                        logging_level="warning",
                        object_store_memory=OBJECT_STORE,
                    )
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise UserError(f"cannot connect to the Ray cluster at {address}: {exc}") from None
            self.owned = True
        self.remote = ray.remote(num_cpus=1, max_retries=scale.retries)(_ray_task)

    def world_size(self, scale: ScaleConfig) -> int:
        return scale.world_size or max(1, int(self.ray.cluster_resources().get("CPU", 1)))

    def run(self, job: Job, stage: str, tasks: int, what: str) -> dict[str, int]:
        ray = self.ray
        shipped = ray.put(job)
        pending = {self.remote.remote(shipped, stage, i): i for i in range(tasks)}
        counts = {"ran": 0, "reused": 0}
        with progress_bar(f"{what}: {stage}", total=tasks) as advance:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                index = pending.pop(done[0])
                try:
                    counts[ray.get(done[0])] += 1
                except Exception as exc:  # a task's own error, or its worker's death
                    for ref in pending:
                        ray.cancel(ref, force=True)
                    raise _failure(stage, index, exc) from None
                advance(1)
        return counts

    def __enter__(self) -> RayTasks:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        if self.owned:
            self.ray.shutdown()


def _failure(stage: str, index: int, exc: Exception) -> Exception:
    cause: Any = getattr(exc, "cause", None)
    if isinstance(cause, UserError):
        return cause
    first = str(cause or exc).strip().splitlines()
    why = first[-1] if first else type(exc).__name__
    return WorkFailed(
        f"{stage} task {index} failed ({type(exc).__name__}: {why}); "
        "finished tasks are kept: run the same command again to do the rest"
    )


def executor_for(kind: str, scale: ScaleConfig) -> InProcess | RayTasks:
    """The task runner of an executor: ray -> RayTasks; slurm (the job that ends it) -> InProcess."""
    return RayTasks(scale) if kind == "ray" else InProcess()
