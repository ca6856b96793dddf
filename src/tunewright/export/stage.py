"""`tunewright export RUN`: write the export, then prove it answers like the trained model.

Each export of a name is a new, immutable version (`exports/<name>/v<N>/`, with
`exports/<name>/latest` moved to it when the export completes). An export is refused when
the training run's latest evaluation is not GO (unless `allow_failed_eval`, which is recorded).
The export's manifest names that evaluation and its verdict, and the base model by the
name the training config used plus a content hash, so the export holds no path of the
machine that made it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from tunewright.core.adapter_files import make_portable
from tunewright.core.errors import CheckFailed, DataError, UserError
from tunewright.core.export_versions import LATEST, next_version_dir, versions
from tunewright.core.io import read_jsonl_strict, write_json, write_text
from tunewright.core.model_source import ModelSource, base_record, resolve_model
from tunewright.core.progress import status
from tunewright.core.records import RecordError, to_conversation
from tunewright.core.runs import Run, list_manifests
from tunewright.export.merged import export_model
from tunewright.export.parity import ParityResult, check_parity
from tunewright.export.readme import export_readme

EXPORT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def golden_prompts(path: Path) -> tuple[list[str], list[list[dict[str, str]]]]:
    """Prompts (every message before the last assistant turn, or all) from a JSONL file."""
    ids, prompts = [], []
    for i, obj in enumerate(read_jsonl_strict(path), start=1):
        try:
            conv = to_conversation(obj, path.name, str(i))
        except RecordError as exc:
            raise DataError(f"{path}:{i}: {exc}") from None
        ids.append(conv.id)
        prompts.append([{"role": m.role, "content": m.content} for m in conv.prompt_messages()])
    if not prompts:
        raise DataError(f"{path}: no golden prompts")
    return ids, prompts


def latest_eval(workspace: Path, run_id: str) -> dict[str, Any] | None:
    """The newest eval run that evaluated `run_id` (as the model, not the baseline) and its verdict."""
    evals = [m for m in list_manifests(workspace) if m["stage"] == "eval" and m["results"].get("model_run") == run_id]
    if not evals:
        return None
    m = max(evals, key=lambda m: (m["started_at"], m["run_id"]))
    failed = [f"{g['metric']} ({g['status']})" for g in m["results"]["gates"] if g["status"] != "PASS"]
    return {
        "run_id": m["run_id"],
        "verdict": m["results"]["verdict"],
        "passed": m["results"]["verdict"] == "GO",
        "failed_gates": failed,
    }


def _target(workspace: Path, source: ModelSource, fmt: str, name: str | None) -> Path:
    name = name or f"{source.label}-{fmt}"
    if not EXPORT_NAME.match(name):
        raise UserError(f"--name {name!r}: use letters, digits, '.', '_' and '-' (a directory name under exports/)")
    return next_version_dir(workspace / "exports" / name)


def run_export(
    workspace: Path,
    run_ref: str,
    fmt: str,
    name: str | None,
    golden: Path,
    run: Run,
    allow_failed_eval: bool = False,
    max_shard_size: str = "5GB",
) -> tuple[ParityResult, Path]:
    """Export `run_ref` to `exports/<name>`; the directory appears only if parity holds."""
    source = resolve_model(workspace, run_ref)
    if source.run_id is None:
        raise UserError(f"{run_ref} is not a training run; export takes one (a train-… run id or latest:train)")
    out_dir = _target(workspace, source, fmt, name)
    verdict = latest_eval(workspace, source.run_id)
    if verdict is not None and not verdict["passed"] and not allow_failed_eval:
        raise CheckFailed(
            f"run {source.run_id}'s latest evaluation ({verdict['run_id']}) is {verdict['verdict']}: gate(s) "
            f"{', '.join(verdict['failed_gates'])}; not exported. Pass --allow-failed-eval to export it anyway "
            "(recorded in the export's manifest and README)"
        )
    run.add_parent(source.run_id)
    if verdict is not None:
        run.add_parent(verdict["run_id"])
    for path in source.files():
        run.add_input(path)
    run.add_input(golden)
    ids, prompts = golden_prompts(golden)
    tmp = run.new_output_dir(out_dir)
    base_name = source.base_name or source.base
    export_label = f"{out_dir.parent.name}/{out_dir.name}"
    with status(f"writing the {fmt} export of {source.run_id}"):
        warnings = export_model(source, fmt, tmp, max_shard_size)
    exported = (
        ModelSource(export_label, str(tmp))
        if fmt == "merged"
        else ModelSource(export_label, source.base, tmp, dtype=source.dtype)
    )
    parity = check_parity(source, exported, prompts, ids)
    write_json(tmp / "parity.json", {"prompts": parity.prompts, "diverged": parity.diverged})
    if not parity.passed:
        first = parity.diverged[0]
        raise CheckFailed(
            f"export diverges from the trained model on {len(parity.diverged)}/{parity.prompts} golden "
            f"prompts; first: {first['id']}: trained {first['trained']!r} vs export {first['export']!r}"
        )
    previous = versions(out_dir.parent)
    run.results.update(
        format=fmt,
        name=out_dir.parent.name,
        version=out_dir.name,
        previous_version=f"v{previous[-1]}" if previous else None,
        export_dir=run.rel(out_dir),
        source_run=source.run_id,
        dtype=source.dtype,
        base_model=base_record(workspace, base_name),
        parity_prompts=parity.prompts,
        parity_passed=True,
        warnings=warnings,
        eval=verdict,
        allow_failed_eval=allow_failed_eval,
    )
    readme = export_readme(export_label, fmt, tmp, run.results, verdict, allow_failed_eval)
    if fmt == "adapter":
        make_portable(tmp, base_name, readme)
    else:
        write_text(tmp / "README.md", readme)
    run.manifest_copies.append(tmp / "manifest.json")
    run.output_link(out_dir.parent / LATEST, out_dir.name)
    return parity, out_dir
