"""The license policy (`configs/policy.yaml`): what a promoted model may be built from.

The licenses checked are the base model's (its README's YAML front matter `license:`, as
the Hugging Face hub writes it, else `license` in config.json) and those of the data
sources of every curation run in the training run's lineage (their curate configs). Each
is allowed, needs review, or forbidden by the policy; one that is unlisted or missing gets
the policy's `unlisted` class.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field

from tunewright.core.config import StrictModel, load_config
from tunewright.core.errors import UserError
from tunewright.core.manifest import load_manifest
from tunewright.core.model_location import locate_model
from tunewright.core.workspace import example_config

Class = Literal["allowed", "needs_review", "forbidden"]


class Licenses(StrictModel):
    allowed: list[str] = Field(default_factory=list)
    """Licenses a released model may be built from."""
    needs_review: list[str] = Field(default_factory=list)
    """Licenses that need a person's review (`promote --license-reviewed`)."""
    forbidden: list[str] = Field(default_factory=list)
    """Licenses a released model may never be built from."""


class PolicyConfig(StrictModel):
    licenses: Licenses = Field(default_factory=Licenses)
    """The license lists."""
    unlisted: Class = "needs_review"
    """The class of a license in none of the lists, or of a missing one."""

    def classify(self, license_id: str | None) -> Class:
        key = (license_id or "").strip().lower()
        for cls in ("forbidden", "needs_review", "allowed"):
            if key and key in {x.lower() for x in getattr(self.licenses, cls)}:
                return cls  # type: ignore[return-value]
        return self.unlisted


def load_policy(workspace: Path) -> PolicyConfig:
    """The workspace's `configs/policy.yaml`, else the shipped example."""
    path = workspace / "configs" / "policy.yaml"
    if path.is_file():
        return load_config(path, PolicyConfig)
    return PolicyConfig.model_validate(yaml.safe_load(example_config("policy.yaml")))


def model_license(model_dir: Path) -> str | None:
    """A model directory's license: README front matter `license:`, else config.json `license`."""
    readme = model_dir / "README.md"
    if readme.is_file():
        text = readme.read_text(encoding="utf-8")
        if text.startswith("---"):
            front = yaml.safe_load(text.split("---", 2)[1]) or {}
            if isinstance(front, dict) and front.get("license"):
                return str(front["license"])
    config = model_dir / "config.json"
    if config.is_file():
        found = json.loads(config.read_text(encoding="utf-8")).get("license")
        return str(found) if found else None
    return None


def lineage_licenses(workspace: Path, train_run: str, ancestors: list[str]) -> list[tuple[str, str | None]]:
    """(what, license) for the base model of `train_run` and every data source of its curation runs."""
    found: list[tuple[str, str | None]] = []
    manifest = load_manifest(workspace / "runs" / train_run)
    base = (manifest["config"].get("model") or {}).get("name_or_path")
    if base:
        try:
            where: Path | None = Path(locate_model(workspace, base, "the base model"))
        except UserError:  # a base no longer at hand: its license cannot be read, so it counts as unlisted
            where = None
        found.append((f"base model {base}", model_license(where) if where and where.is_dir() else None))
    for rid in ancestors:
        run_dir = workspace / "runs" / rid
        if not (run_dir / "manifest.json").is_file():
            continue
        m = load_manifest(run_dir)
        if m["stage"] != "curate":
            continue
        for source in m["config"].get("sources", []):
            found.append((f"data source {source.get('name') or source.get('path')}", source.get("license")))
    return found


def provenance(workspace: Path, manifest: dict[str, Any]) -> list[str]:
    """What a run took from outside the workspace's runs, each with its license: the base model a
    training run started from, the sources a curation run read, other raw files (license not recorded)."""
    config, lines = manifest.get("config") or {}, []
    base = (config.get("model") or {}).get("name_or_path") if manifest["stage"] == "train" else None
    if base:
        try:
            where = Path(locate_model(workspace, base, "the base model"))
            found = model_license(where) if where.is_dir() else None
        except UserError:
            found = None
        lines.append(f"base model {base}: license {found or 'not found'}")
    sources = config.get("sources", []) if manifest["stage"] == "curate" else []
    for source in sources:
        lines.append(f"raw {source.get('path')}: license {source.get('license') or 'not recorded'}")
    named = {source.get("path") for source in sources}
    for entry in manifest.get("inputs", []):
        if "run" not in entry and entry["path"].startswith("data/raw/") and entry["path"] not in named:
            lines.append(f"raw {entry['path']}: license not recorded")
    return lines
