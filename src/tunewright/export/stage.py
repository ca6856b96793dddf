"""`tunewright export RUN`: write the export, then prove it answers like the trained model."""

from __future__ import annotations

from pathlib import Path

from tunewright.core.errors import CheckFailed, DataError
from tunewright.core.io import atomic_dir, read_jsonl_strict, write_json
from tunewright.core.modeling import ModelSource, resolve_model
from tunewright.core.records import RecordError, to_conversation
from tunewright.core.runs import Run
from tunewright.export.merged import export_model
from tunewright.export.parity import ParityResult, check_parity


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


def run_export(
    workspace: Path, run_ref: str, fmt: str, name: str | None, golden: Path, run: Run
) -> tuple[ParityResult, Path]:
    """Export `run_ref` to `exports/<name>`; the directory appears only if parity holds."""
    source = resolve_model(workspace, run_ref)
    out_dir = workspace / "exports" / (name or f"{source.label}-{fmt}")
    if source.run_id:
        run.parents.append(source.run_id)
    for path in source.files():
        run.add_input(path)
    run.add_input(golden)
    ids, prompts = golden_prompts(golden)
    with atomic_dir(out_dir) as tmp:
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
    run.add_output(out_dir)
    run.results.update(format=fmt, export_dir=run.rel(out_dir), parity_prompts=parity.prompts, parity_passed=True)
    return parity, out_dir
