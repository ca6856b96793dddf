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
from dataclasses import dataclass
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


NAMED = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)@([A-Za-z0-9_-]+)$")


@dataclass(frozen=True)
class VersionRef:
    """`NAME@SELECTOR` parsed: the export name, and `latest`, `v<N>` or an alias (None for a bare name)."""

    name: str
    selector: str | None = None

    @property
    def number(self) -> int | None:
        """The version number a `v<N>` selector names (None for `latest`, an alias, or a bare name)."""
        found = VERSION.match(self.selector or "")
        return int(found.group(1)) if found else None

    @property
    def is_alias(self) -> bool:
        return self.selector not in (None, LATEST) and self.number is None


def parse_ref(ref: str) -> VersionRef | None:
    """`NAME@v3`, `NAME@latest`, `NAME@<alias>` -> a `VersionRef` (None: not of that form)."""
    found = NAMED.match(ref)
    return VersionRef(*found.groups()) if found else None


def export_name(path: Path) -> str:
    """The export's name for a version directory (`exports/x/v2`, `x@production` -> `x`), else the directory's name."""
    parsed = parse_ref(str(path))
    if parsed is not None:
        return parsed.name
    path = path.resolve() if path.is_symlink() else path
    if VERSION.match(path.name) or path.name == LATEST:
        return path.parent.name
    return path.name


def version_number(workspace: Path, ref: VersionRef) -> int:
    """The version `ref` names; a bare name or `latest` is the newest. An unknown name, version or unset
    alias is a UserError naming what exists."""
    export_dir = workspace / "exports" / ref.name
    found = versions(export_dir)
    shown = f"{ref.name}@{ref.selector}" if ref.selector else ref.name
    if not found:
        raise UserError(f"{shown}: there is no export named {ref.name!r} (exports/{ref.name} has no versions)")
    if not ref.is_alias:
        number = ref.number or found[-1]
        if number not in found:
            have = ", ".join(f"v{v}" for v in found)
            raise UserError(f"{shown}: export {ref.name!r} has no version v{number}; it has {have}")
        return number
    from tunewright.core.registry import open_registry

    with open_registry(workspace) as registry:
        number = registry.alias_version(ref.name, str(ref.selector))
    if number is None:
        raise UserError(
            f"{shown}: no version of {ref.name!r} is {ref.selector!r} "
            f"(tunewright promote {ref.name} --to {ref.selector})"
        )
    return number


def named_version(workspace: Path, ref: str) -> Path | None:
    """`NAME@v3`, `NAME@latest` or `NAME@<alias>` -> that version's directory (None: not such a reference)."""
    parsed = parse_ref(ref)
    if parsed is None:
        return None
    if parsed.selector == LATEST:
        version_number(workspace, parsed)
        return resolve_version(workspace / "exports" / parsed.name)
    return workspace / "exports" / parsed.name / f"v{version_number(workspace, parsed)}"
