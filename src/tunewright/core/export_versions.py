"""Versioned exports: `exports/<name>/v<N>/` directories that are never overwritten, and `latest`.

Each export of a name gets the next version number; `exports/<name>/latest` is a relative
symbolic link to the newest version, so any tool can load `exports/<name>/latest` and
tunewright accepts `exports/<name>` for it. A symbolic link is used rather than a pointer
file because engines outside tunewright (vLLM, transformers) load a directory, not a
pointer.
"""

from __future__ import annotations

import re
from pathlib import Path

from tunewright.core.errors import UserError

VERSION = re.compile(r"^v([1-9][0-9]*)$")
LATEST = "latest"


def versions(export_dir: Path) -> list[int]:
    """The version numbers under an export name, ascending."""
    if not export_dir.is_dir():
        return []
    return sorted(int(m.group(1)) for p in export_dir.iterdir() if p.is_dir() and (m := VERSION.match(p.name)))


def next_version_dir(export_dir: Path) -> Path:
    """Where the next version of this export goes; a pre-versioning export in the way is named."""
    if (export_dir / "config.json").is_file() or (export_dir / "adapter_config.json").is_file():
        raise UserError(
            f"{export_dir} holds an export made before exports were versioned; move it away "
            f"(e.g. to {export_dir.name}-old) so that new versions can go under it"
        )
    found = versions(export_dir)
    return export_dir / f"v{(found[-1] if found else 0) + 1}"


def resolve_version(path: Path) -> Path:
    """`exports/<name>` -> its latest version directory; any other path unchanged."""
    latest = path / LATEST
    if latest.is_dir() and not (path / "config.json").is_file() and not (path / "adapter_config.json").is_file():
        return latest.resolve()
    return path


def export_name(path: Path) -> str:
    """The export's name for a version directory (`exports/x/v2` -> `x`), else the directory's own name."""
    path = path.resolve() if path.is_symlink() else path
    if VERSION.match(path.name) or path.name == LATEST:
        return path.parent.name
    return path.name
