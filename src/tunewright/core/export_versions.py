"""Versioned exports: `exports/<name>/v<N>/` directories that are never overwritten, and `latest`.

`NAME@v2`, `NAME@latest` and `NAME@<alias>` (an alias the registry keeps, e.g. `production`)
name a version wherever a model is taken.

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
    """The export's name for a version directory (`exports/x/v2`, `x@production` -> `x`), else the directory's name."""
    named = NAMED.match(str(path))
    if named:
        return named.group(1)
    path = path.resolve() if path.is_symlink() else path
    if VERSION.match(path.name) or path.name == LATEST:
        return path.parent.name
    return path.name


NAMED = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)@([A-Za-z0-9_-]+)$")


def named_version(workspace: Path, ref: str) -> Path | None:
    """`NAME@v3`, `NAME@latest` or `NAME@<alias>` -> that version's directory (None: not such a reference)."""
    found = NAMED.match(ref)
    if found is None:
        return None
    name, selector = found.groups()
    export_dir = workspace / "exports" / name
    if not versions(export_dir):
        raise UserError(f"{ref}: there is no export named {name!r} (exports/{name} has no versions)")
    if selector == LATEST:
        return resolve_version(export_dir)
    if VERSION.match(selector):
        if not (export_dir / selector).is_dir():
            have = ", ".join(f"v{v}" for v in versions(export_dir))
            raise UserError(f"{ref}: export {name!r} has no version {selector}; it has {have}")
        return export_dir / selector
    from tunewright.core.registry import alias_version, open_registry

    version = alias_version(open_registry(workspace), name, selector)
    if version is None:
        raise UserError(f"{ref}: no version of {name!r} is {selector!r} (tunewright promote {name} --to {selector})")
    return export_dir / f"v{version}"
