"""The workspace layout that survives handoff, and resolution of paths relative to it.

Every command takes `--workspace` (default: the current directory) and reads relative
paths from there, so a workspace can be zipped, moved or handed over and still work.
`init` creates the layout and copies the commented example configs shipped in the package.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from tunewright.core.errors import UserError
from tunewright.core.io import write_text

LAYOUT = (
    "data/raw",
    "data/curated",
    "data/splits",
    "data/quarantine",
    "configs",
    "models",
    "runs",
    "exports",
    "reports",
)

CONFIG_NAMES = (
    "curate.yaml",
    "sft-lora.yaml",
    "dpo-lora.yaml",
    "eval.yaml",
    "eval-preferences.yaml",
    "serve.yaml",
    "monitor.yaml",
    "policy.yaml",
    "card.yaml",
    "pipeline.yaml",
)


def resolve(workspace: Path, path: str | Path) -> Path:
    """A path as given if absolute, else relative to the workspace."""
    p = Path(path)
    return p if p.is_absolute() else workspace / p


def example_config(name: str) -> str:
    """The text of a shipped example config (with its leading comment)."""
    return resources.files("tunewright.configs").joinpath(name).read_text(encoding="utf-8")


def init_workspace(root: Path, force: bool = False) -> list[Path]:
    """Create the workspace layout and example configs; returns the files written.

    Existing configs are kept unless `force` is set, so re-running init never loses edits.
    """
    if root.exists() and not root.is_dir():
        raise UserError(f"{root} exists and is not a directory")
    for sub in LAYOUT:
        (root / sub).mkdir(parents=True, exist_ok=True)
    written = []
    for name in CONFIG_NAMES:
        target = root / "configs" / name
        if target.exists() and not force:
            continue
        write_text(target, example_config(name))
        written.append(target)
    return written


def workspace_relative(workspace: Path, path: Path) -> str:
    """`path` relative to the workspace where possible (manifests survive moves), else absolute."""
    try:
        return str(path.resolve().relative_to(workspace.resolve()))
    except ValueError:
        return str(path.resolve())
