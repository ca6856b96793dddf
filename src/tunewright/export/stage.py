"""`tunewright export RUN`: write the export, then prove it answers like the trained model.

An export is refused when its name is taken (unless `overwrite`) and when the training
run's latest evaluation failed a gate (unless `allow_failed_eval`, which is recorded).
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


def _target(workspace: Path, source: ModelSource, fmt: str, name: str | None, overwrite: bool) -> Path:
    name = name or f"{source.label}-{fmt}"
    if not EXPORT_NAME.match(name):
        raise UserError(f"--name {name!r}: use letters, digits, '.', '_' and '-' (a directory name under exports/)")
    out = workspace / "exports" / name
    if out.exists() and not overwrite:
        raise UserError(f"exports/{name} already exists; pass --overwrite to replace it, or choose another --name")
    return out


def run_export(
    workspace: Path,
    run_ref: str,
    fmt: str,
    name: str | None,
    golden: Path,
    run: Run,
    overwrite: bool = False,
    allow_failed_eval: bool = False,
) -> tuple[ParityResult, Path]:
    """Export `run_ref` to `exports/<name>`; the directory appears only if parity holds."""
    source = resolve_model(workspace, run_ref)
    if source.run_id is None:
        raise UserError(f"{run_ref} is not a training run; export takes one (a train-… run id or latest:train)")
    out_dir = _target(workspace, source, fmt, name, overwrite)
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
    tmp = run.output_dir(out_dir)
    base_name = source.base_name or source.base
    with status(f"writing the {fmt} export of {source.run_id}"):
        export_model(source, fmt, tmp)
    exported = (
        ModelSource(out_dir.name, str(tmp))
        if fmt == "merged"
        else ModelSource(out_dir.name, source.base, tmp, dtype=source.dtype)
    )
    parity = check_parity(source, exported, prompts, ids)
    write_json(tmp / "parity.json", {"prompts": parity.prompts, "diverged": parity.diverged})
    if not parity.passed:
        first = parity.diverged[0]
        raise CheckFailed(
            f"export diverges from the trained model on {len(parity.diverged)}/{parity.prompts} golden "
            f"prompts; first: {first['id']}: trained {first['trained']!r} vs export {first['export']!r}"
        )
    run.results.update(
        format=fmt,
        export_dir=run.rel(out_dir),
        source_run=source.run_id,
        dtype=source.dtype,
        base_model=base_record(workspace, base_name),
        parity_prompts=parity.prompts,
        parity_passed=True,
        eval=verdict,
        allow_failed_eval=allow_failed_eval,
    )
    readme = export_readme(out_dir.name, fmt, tmp, run.results, verdict, allow_failed_eval)
    if fmt == "adapter":
        make_portable(tmp, base_name, readme)
    else:
        write_text(tmp / "README.md", readme)
    run.manifest_copies.append(tmp / "manifest.json")
    return parity, out_dir
