"""YAML -> typed config, with dotted command-line overrides and a `_target_` allowlist.

Precedence is code defaults < YAML < `key.path=value` overrides. Every stage declares its
config as a pydantic model whose sub-models forbid unknown keys; a validation failure
becomes a `ConfigError` that names the file, the key path, what was expected and what was
found. YAML is user input, so `_target_` only resolves against trusted import prefixes, and
only to the kind of class its key expects (an optimizer key takes optimizer classes).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from tunewright.core.errors import ConfigError

ALLOWED_TARGET_PREFIXES: tuple[str, ...] = ("tunewright.", "torch.", "transformers.", "peft.")

M = TypeVar("M", bound=BaseModel)


class StrictModel(BaseModel):
    """Base for every config model: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=(), use_attribute_docstrings=True)


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split `a.b.c=value` into its key path and a YAML-typed value (`3` is an int)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r} is not of the form key.path=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of `data` with each `key.path=value` override applied.

    A numeric path part indexes into a list (`sources.0.path=...`).
    """
    result = _deep_copy(data)
    for text in overrides:
        path, value = parse_override(text)
        node: Any = result
        for i, part in enumerate(path):
            where = ".".join(path[: i + 1])
            last = i == len(path) - 1
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise ConfigError(f"override {text!r}: {where} is not an index of a {len(node)}-item list")
                key: Any = int(part)
            elif isinstance(node, dict):
                key = part
                if not last and node.get(part) is None:
                    node[part] = {}
            else:
                raise ConfigError(f"override {text!r}: {'.'.join(path[:i])} is a value, not a section")
            if last:
                node[key] = value
            else:
                node = node[key]
    return result


def _deep_copy(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _deep_copy(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_deep_copy(v) for v in data]
    return data


def read_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML mapping, turning a missing file or a syntax error into a `ConfigError`."""
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, found {type(data).__name__}")
    return data


def validate(data: dict[str, Any], model: type[M], source: str) -> M:
    """Validate `data` into `model`, reporting every problem with its key path."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, source)) from None


def load_config(path: Path | None, model: type[M], overrides: list[str] | None = None) -> M:
    """Load a YAML file (or only defaults when `path` is None) and apply overrides."""
    data = read_yaml(path) if path is not None else {}
    data = apply_overrides(data, overrides or [])
    return validate(data, model, str(path) if path is not None else "<defaults>")


def workspace_config(workspace: Path, name: str, model: type[M], overrides: list[str] | None = None) -> M:
    """The workspace's `configs/<name>` (the defaults where it has none), with overrides."""
    path = workspace / "configs" / name
    return load_config(path if path.is_file() else None, model, overrides)


def _describe(exc: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid configuration"]
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "<top level>"
        if err["type"] == "extra_forbidden":
            lines.append(f"  {key}: unknown key (found {err['input']!r})")
        elif err["type"] == "missing":
            lines.append(f"  {key}: required key is missing")
        elif err["type"] == "value_error":
            lines.append(f"  {key}: {err['msg'].removeprefix('Value error, ')}")
        else:
            lines.append(f"  {key}: {err['msg']} (found {err['input']!r})")
    return "\n".join(lines)


def resolve_target(target: str, key: str, kind: type, allow_any: bool = False) -> type:
    """Import the class a `_target_` names and check that it is a `kind` before anything calls it.

    YAML and overrides are user input: outside the trusted prefixes a target needs the
    explicit opt-in, and inside them a name such as `torch.hub.load` or `torch.save` is
    still refused, because the key only accepts subclasses of `kind`.
    """
    if not allow_any and not target.startswith(ALLOWED_TARGET_PREFIXES):
        allowed = ", ".join(ALLOWED_TARGET_PREFIXES)
        raise ConfigError(
            f"{key}: {target!r} is not under an allowed prefix ({allowed}); set allow_any_target: true to opt in"
        )
    module_name, _, attr = target.rpartition(".")
    try:
        found = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError):
        raise ConfigError(f"{key}: {target!r} cannot be imported") from None
    if not (isinstance(found, type) and issubclass(found, kind)):
        what = f"a {type(found).__name__}" if not isinstance(found, type) else "a class of another kind"
        raise ConfigError(f"{key}: {target!r} is {what}; expected a subclass of {kind.__module__}.{kind.__qualname__}")
    return found


def instantiate(cls: type, key: str, *args: Any, **kwargs: Any) -> Any:
    """Call a resolved `_target_` class; a constructor that rejects its arguments names the key."""
    try:
        return cls(*args, **kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{key}: {cls.__module__}.{cls.__qualname__} rejected its arguments: {exc}") from None


def dump_yaml(data: Any) -> str:
    """Serialise a resolved config for a run directory, keys in declaration order."""
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
