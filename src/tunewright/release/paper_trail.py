"""Which version a card describes, which version its release notes compare with, and the writing.

`NAME` means the version in production (the one users meet), else the newest version;
`NAME@v3`, `NAME@latest` and `NAME@<alias>` name one. The release notes compare with the
version production held before this one was promoted, or, for a version not (yet) in
production, with the one in production now.
"""

from __future__ import annotations

from pathlib import Path

from tunewright.core.export_versions import VersionRef, parse_ref, version_number
from tunewright.core.io import write_text
from tunewright.core.registry import Registry, open_registry
from tunewright.core.runs import Run, start_run
from tunewright.release.card import load_card_config, model_card, release_notes
from tunewright.release.facts import eval_against, previous_production, version_facts

MODEL_CARD = Path("reports/model-card.md")
RELEASE_NOTES = Path("reports/release-notes.md")


def _version(workspace: Path, registry: Registry, ref: str) -> tuple[str, int]:
    """`NAME@selector` -> that version; a bare name -> its production version, else its newest."""
    parsed = parse_ref(ref)
    if parsed is not None:
        return parsed.name, version_number(workspace, parsed)
    newest = version_number(workspace, VersionRef(ref))
    production = registry.alias_version(ref, "production")
    return ref, production if production is not None else newest


def write_paper_trail(workspace: Path, ref: str, run: Run) -> tuple[Path, Path]:
    """Render the model card and the release notes of `ref` into the run's outputs; their final paths."""
    with open_registry(workspace) as registry:
        name, version = _version(workspace, registry, ref)
        new = version_facts(workspace, registry, name, version)
        previous = previous_production(registry, name, version)
        old = version_facts(workspace, registry, name, previous) if previous is not None else None
        paired = eval_against(workspace, registry, new, old) if old is not None else None
    for m in (new.export, new.eval, paired):
        if m and m.get("run_id"):
            run.add_parent(m["run_id"])
    card, notes = workspace / MODEL_CARD, workspace / RELEASE_NOTES
    write_text(run.output_file(card), model_card(new, load_card_config(workspace)))
    write_text(run.output_file(notes), release_notes(new, old, paired))
    run.results.update(
        model=new.label,
        name=name,
        version=f"v{version}",
        previous_production=f"v{previous}" if previous is not None else None,
        eval_run=new.eval["run_id"] if new.eval else None,
        paired_eval=paired["run_id"] if paired else None,
    )
    return card, notes


def write_card(workspace: Path, ref: str, command: list[str]) -> tuple[Run, Path, Path]:
    """`tunewright card` as a library call: the paper trail of `ref`, recorded as a run; the run and its paths."""
    with start_run(workspace, "card", command, {"model": ref}) as run:
        card, notes = write_paper_trail(workspace, ref, run)
    return run, card, notes
