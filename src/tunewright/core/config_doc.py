"""A resolved config as commented YAML: every key with its value and a one-line description.

`tunewright config show STAGE` prints this, so the keys a stage accepts, their defaults
and what they do can be discovered without reading the source. The output is valid YAML
that loads back into the same config, so it can also be used as a starting config file.
The descriptions are the config models' field docstrings.
"""

from __future__ import annotations

import typing
from typing import Any

import yaml
from pydantic import BaseModel

COMMENT_COLUMN = 48


def _flow(value: Any) -> str:
    """A value as one line of YAML (flow style for lists and mappings)."""
    text = yaml.safe_dump([value], default_flow_style=True, width=float("inf"), allow_unicode=True, sort_keys=False)
    return text.strip()[1:-1]


def _line(prefix: str, text: str, doc: str | None) -> str:
    line = prefix + text
    return f"{line.ljust(COMMENT_COLUMN)}  # {' '.join(doc.split())}" if doc else line


def _render(model: BaseModel, indent: str, first_prefix: str, lines: list[str]) -> None:
    prefix = first_prefix
    for name, field in type(model).model_fields.items():
        key, value, doc = field.alias or name, getattr(model, name), field.description
        if isinstance(value, BaseModel):
            lines.append(_line(prefix, f"{key}:", doc))
            _render(value, indent + "  ", indent + "  ", lines)
        elif isinstance(value, list) and value and all(isinstance(v, BaseModel) for v in value):
            lines.append(_line(prefix, f"{key}:", doc))
            for item in value:
                _render(item, indent + "    ", indent + "  - ", lines)
        else:
            lines.append(_line(prefix, f"{key}: {_flow(value)}", doc))
        prefix = indent


def describe_config(config: BaseModel) -> str:
    """The config as YAML with every key's description as a trailing comment."""
    lines: list[str] = []
    _render(config, "", "", lines)
    return "\n".join(lines) + "\n"


def undescribed_fields(model: type[BaseModel], path: str = "") -> list[str]:
    """Key paths of a config model (and its sub-models) that have no description."""
    missing = []
    for name, field in model.model_fields.items():
        key = f"{path}{field.alias or name}"
        if not field.description:
            missing.append(key)
        for arg in _models_in(field.annotation):
            missing += undescribed_fields(arg, f"{key}.")
    return missing


def _models_in(annotation: object) -> list[type[BaseModel]]:
    """The config models an annotation holds, through lists, unions and `Annotated`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]
