"""Canary releases in `serve`: a candidate version answers a weight of one name's traffic, and the monitor's
thresholds decide whether it stays.

Each request to the canaried name is routed at random: to the candidate with probability
`weight`, else to production. The decision travels with the request into the capture
(`canary` in the captured request: arm, candidate, weight, state), and such requests are always
captured, whatever the sample rate, so every routing decision can be audited.

Every `check_every_s` the canary reads this window's routed requests back from the capture store
(feedback included) and, once the candidate has answered `min_requests` of them, asks its
`CanaryPolicy` which thresholds they cross. A breach moves the candidate's alias back (recorded
with the failed checks as the reason) and sends all traffic to production from then on. A clean
sample leaves the candidate in place, or, with `promote_to`, promotes it through promote's gates
and sends it all the traffic; a refused promotion is logged with its reasons and the candidate
is held at its weight. A candidate that passed keeps being checked: a later breach still rolls
it back. The policy (the monitor's checks, the registry's moves) is given by the caller, since
serving imports neither the monitor nor the release stage.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunewright.core import capture_store as store
from tunewright.core.errors import CheckFailed, UserError
from tunewright.core.export_versions import parse_ref, version_number
from tunewright.core.model_source import ModelSource, resolve_model
from tunewright.serve.config import CanaryConfig

log = logging.getLogger("tunewright.serve")
STATES = ("observing", "passed", "held", "promoted", "rolled_back")


@dataclass(frozen=True)
class CanaryPlan:
    """What the canary routes to and which registry alias it answers for."""

    workspace: Path
    export: str
    """The registry export name (both versions are versions of it)."""
    alias: str
    """The candidate's alias, the one a breach moves back."""
    version: int
    """The candidate's version."""
    production: int
    """The version the server serves (where the alias goes when it held no earlier version)."""
    adapter: str
    """The engine adapter that answers as the candidate."""

    @property
    def label(self) -> str:
        """The candidate as `NAME@v<N>`."""
        return f"{self.export}@v{self.version}"


@dataclass(frozen=True)
class CanaryPolicy:
    """What the canary asks of the monitor and the registry."""

    breaches: Callable[[list[dict[str, Any]], list[dict[str, Any]]], list[str]]
    """The thresholds the candidate's routed requests cross (production's given to compare), described."""
    roll_back: Callable[[str], tuple[int, int]]
    """Move the candidate's alias back, recording the reason; (from, to)."""
    promote: Callable[[str, str], None]
    """Promote the candidate to an alias through promote's gates (CheckFailed or UserError when refused)."""


CanarySetup = tuple[CanaryPlan, CanaryPolicy]  # what `serve` is handed to run a canary


class Canary:
    """The routing of one served name's traffic and the decisions on the candidate."""

    def __init__(
        self,
        cfg: CanaryConfig,
        plan: CanaryPlan,
        policy: CanaryPolicy,
        served_name: str,
        store_path: Path,
        window: str,
    ) -> None:
        self.cfg, self.plan, self.policy, self.name = cfg, plan, policy, cfg.name or served_name
        self.store_path, self.window = store_path, window
        self.weight = cfg.weight
        self.state = "observing"
        self.decision: str | None = None
        self.started = time.time()
        self._random = random.Random()

    def route(self, model: str, adapter: str | None) -> tuple[str | None, dict[str, Any] | None]:
        """The adapter that answers a request to `model` and the routing decision to capture (None: not routed)."""
        if model != self.name:
            return adapter, None
        candidate = self._random.random() < self.weight
        decision = {
            "arm": "candidate" if candidate else "production",
            "candidate": self.plan.label,
            "weight": self.weight,
            "state": self.state,
        }
        return (self.plan.adapter if candidate else adapter), decision

    def rows(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """This window's routed requests (feedback joined): the candidate's and production's."""
        if not self.store_path.is_file():
            return [], []
        conn = store.connect(self.store_path, readonly=True)
        try:
            routed = [
                r
                for r in store.read_requests(conn, since=self.started)
                if r["window_id"] == self.window and (r.get("request") or {}).get("canary")
            ]
        finally:
            conn.close()
        candidate = [r for r in routed if r["request"]["canary"]["arm"] == "candidate"]
        return candidate, [r for r in routed if r["request"]["canary"]["arm"] == "production"]

    def check(self) -> str:
        """Look at the candidate's requests so far and act on what they show; returns the state."""
        if self.state in ("promoted", "rolled_back"):
            return self.state
        candidate, production = self.rows()
        if len(candidate) < self.cfg.min_requests:
            return self.state
        failed = self.policy.breaches(candidate, production)
        if failed:
            self._roll_back(len(candidate), failed)
        elif self.state == "observing":
            self._passed(len(candidate))
        return self.state

    def _roll_back(self, n: int, failed: list[str]) -> None:
        self.weight = 0.0
        reason = f"canary: {self.plan.label} breached after {n} requests: " + "; ".join(failed)
        self.decision = reason
        plan = self.plan
        try:
            moved = self.policy.roll_back(reason)
        except UserError as exc:
            log.error("%s; the alias was not moved: %s", reason, exc)
        else:
            log.warning("%s; %s@%s moved from v%d back to v%d", reason, plan.export, plan.alias, *moved)
        self.state = "rolled_back"

    def _passed(self, n: int) -> None:
        clean = f"canary: {self.plan.label} clean over {n} requests"
        self.decision = clean
        if self.cfg.promote_to is None:
            log.info("%s; left in place at weight %g", clean, self.weight)
            self.state = "passed"
            return
        try:
            self.policy.promote(self.cfg.promote_to, clean)
        except (CheckFailed, UserError) as exc:
            self.decision = f"{clean}; not promoted: {exc}"
            log.warning("%s", self.decision)
            self.state = "held"
            return
        log.warning("%s; promoted to %s, answering all of %s's traffic", clean, self.cfg.promote_to, self.name)
        self.weight = 1.0
        self.state = "promoted"


def plan_canary(workspace: Path, candidate: str, served_ref: str, served: ModelSource) -> tuple[CanaryPlan, Path]:
    """The plan of `canary.candidate` for a server of `served_ref`, and the candidate adapter's directory; a
    UserError when the candidate cannot answer as an adapter of what is served."""
    ref, of = parse_ref(candidate), parse_ref(served_ref)
    assert ref is not None and ref.selector is not None  # CanaryConfig checked the form
    if of is None or of.name != ref.name:
        raise UserError(
            f"canary.candidate {candidate}: serve a version of {ref.name!r} (e.g. `serve {ref.name}@production`), "
            f"not {served_ref!r}, so a breach has a version to go back to"
        )
    version, production = version_number(workspace, ref), version_number(workspace, of)
    if version == production:
        raise UserError(f"canary.candidate {candidate} is v{version}, the version being served: nothing to compare")
    source = resolve_model(workspace, f"{ref.name}@v{version}")
    if source.adapter is None or Path(source.base).resolve() != Path(served.base).resolve():
        raise UserError(
            f"canary.candidate {candidate} (v{version}) must be an adapter export of the base being served "
            f"({served.base}); it is {'a merged model' if source.adapter is None else 'an adapter of ' + source.base}"
        )
    plan = CanaryPlan(workspace, ref.name, ref.selector, version, production, f"{ref.name}-v{version}")
    return plan, source.adapter
