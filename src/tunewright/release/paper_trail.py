"""Which version a card describes, which version its release notes compare with, and the writing.

`NAME` means the version in production (the one users meet), else the newest version;
`NAME@v3`, `NAME@latest` and `NAME@<alias>` name one. The release notes compare with the
version production held before this one was promoted, or, for a version not (yet) in
production, with the one in production now.
"""

from __future__ import annotations

from pathlib import Path

from tunewright.core.errors import UserError
from tunewright.core.export_versions import NAMED, named_version, versions
from tunewright.core.io import write_text
from tunewright.core.registry import alias_version, open_registry
from tunewright.core.runs import Run
from tunewright.release.card import load_card_config, model_card, release_notes
from tunewright.release.facts import eval_against, previous_production, version_facts

MODEL_CARD = Path("reports/model-card.md")
RELEASE_NOTES = Path("reports/release-notes.md")


def _version(workspace: Path, conn: object, ref: str) -> tuple[str, int]:
    if NAMED.match(ref):
        found = named_version(workspace, ref)
        assert found is not None
        return found.parent.name, int(found.name[1:])
    if not versions(workspace / "exports" / ref):
        raise UserError(f"there is no export named {ref!r} (exports/{ref} has no versions)")
    production = alias_version(conn, ref, "production")  # type: ignore[arg-type]
    return ref, production if production is not None else versions(workspace / "exports" / ref)[-1]


def write_paper_trail(workspace: Path, ref: str, run: Run) -> tuple[Path, Path]:
    """Render the model card and the release notes of `ref` into the run's outputs; their final paths."""
    conn = open_registry(workspace)
    name, version = _version(workspace, conn, ref)
    new = version_facts(workspace, conn, name, version)
    previous = previous_production(conn, name, version)
    old = version_facts(workspace, conn, name, previous) if previous is not None else None
    paired = eval_against(workspace, conn, new, old) if old is not None else None
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
