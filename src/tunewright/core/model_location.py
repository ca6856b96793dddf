"""Where a model reference points: a local directory, a cached hub model, or the hub itself.

A value such as `models/tiny-bse` or `./base` that names no existing directory is a typo,
not a hub id: it fails at once with the path that was looked for, instead of a minute of
hub retries. A hub id that is not in the local Hugging Face cache is looked up only when
the hub answers a quick probe; offline (no route, `HF_HUB_OFFLINE=1`) it fails at once
with what to do. A cached hub model is used from its snapshot directory when the hub is
unreachable, so loading never waits on the network.
"""

from __future__ import annotations

import functools
import os
import re
import urllib.error
import urllib.request
from pathlib import Path

from tunewright.core.errors import UserError

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")
PROBE_TIMEOUT_S = 3.0


def _endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


@functools.cache
def hub_unreachable() -> str | None:
    """Why the Hugging Face hub cannot be reached now (None when it answers), probed once per process."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return "HF_HUB_OFFLINE is set"
    try:
        urllib.request.urlopen(urllib.request.Request(_endpoint(), method="HEAD"), timeout=PROBE_TIMEOUT_S).close()
    except urllib.error.HTTPError:
        return None  # the hub answered, if only with an error status
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return f"{_endpoint()} cannot be reached ({reason})"
    return None


def looks_like_path(ref: str, workspace: Path) -> bool:
    """True when `ref` can only be meant as a file-system path, not a hub id."""
    if ref.startswith(("/", ".", "~")) or "\\" in ref or ref.endswith("/") or not HUB_ID.match(ref):
        return True
    head = ref.split("/", 1)[0]
    return "/" in ref and (workspace / head).is_dir()


def cached_snapshot(repo_id: str) -> Path | None:
    """The local snapshot directory of a hub model in the Hugging Face cache, if it is there."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, "config.json")
    return Path(found).parent if isinstance(found, str) else None


def locate_model(workspace: Path, ref: str, key: str = "model") -> str:
    """The directory or hub id to load `ref` from; a clear `UserError` when there is none.

    `key` names where the reference came from (a config key or option) in the message.
    """
    local = Path(ref).expanduser() if Path(ref).expanduser().is_absolute() else workspace / ref
    if local.is_dir():
        if not (local / "config.json").is_file():
            raise UserError(f"{key}: {local} is a directory but not a model (no config.json)")
        return str(local)
    if local.exists():
        raise UserError(f"{key}: {local} is a file; expected a model directory or a hub id")
    if looks_like_path(ref, workspace):
        raise UserError(f"{key}: no model directory at {local}")
    snapshot = cached_snapshot(ref)
    offline = hub_unreachable()
    if offline is None:
        return ref
    if snapshot is not None:
        return str(snapshot)
    raise UserError(
        f"{key}: {ref!r} is not a directory (looked for {local}) and not in the Hugging Face cache, "
        f"and the hub cannot be used: {offline}. Point it at a local model directory, or download it "
        f"where the hub is reachable (hf download {ref})"
    )
