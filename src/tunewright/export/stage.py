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
import tempfile
from pathlib import Path
from typing import Any

from tunewright.core.adapter_files import make_portable
from tunewright.core.errors import CheckFailed, DataError, UserError
from tunewright.core.export_versions import LATEST, next_version_dir, versions
from tunewright.core.io import read_jsonl_strict, write_json, write_text
from tunewright.core.manifest import EvalResult
from tunewright.core.model_source import ModelSource, base_record, resolve_model
from tunewright.core.modeling import load_tokenizer
from tunewright.core.progress import status
from tunewright.core.records import RecordError, to_conversation
from tunewright.core.registry import open_registry
from tunewright.core.runs import Run, start_run
from tunewright.core.workspace import resolve
from tunewright.export.config import ExportConfig
from tunewright.export.gguf_file import GGUF_TYPES, export_gguf
from tunewright.export.merged import FORMATS, export_model
from tunewright.export.parity import (
    MIN_AGREEMENT,
    PARITY_TOKENS,
    Golden,
    ParityResult,
    check_parity,
    compare_answers,
    kinds,
    top1_agreement_with,
)
from tunewright.export.readme import export_readme
from tunewright.export.verify import check_verifier, llamacpp_check, vllm_answers

EXPORT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def golden_prompts(path: Path) -> Golden:
    """Prompts (every message before the last assistant turn, or all) and the tools they offer, from a JSONL
    file."""
    ids, prompts, tools = [], [], []
    for i, obj in enumerate(read_jsonl_strict(path), start=1):
        try:
            conv = to_conversation(obj, path.name, str(i))
        except RecordError as exc:
            raise DataError(f"{path}:{i}: {exc}") from None
        ids.append(conv.id)
        prompts.append([m.to_dict() for m in conv.prompt_messages()])
        tools.append(conv.tools)
    if not prompts:
        raise DataError(f"{path}: no golden prompts")
    return Golden(ids, prompts, tools)


def latest_eval(workspace: Path, run_id: str) -> EvalResult | None:
    """The newest eval run that evaluated `run_id` (as the model, not the baseline)."""
    with open_registry(workspace) as registry:
        found = registry.newest_eval(model_run=run_id)
    return found[0] if found else None


def _target(workspace: Path, source: ModelSource, fmt: str, name: str | None) -> Path:
    name = name or f"{source.label}-{fmt}"
    if not EXPORT_NAME.match(name):
        raise UserError(f"--name {name!r}: use letters, digits, '.', '_' and '-' (a directory name under exports/)")
    return next_version_dir(workspace / "exports" / name)


def _write_and_check(
    cfg: ExportConfig,
    source: ModelSource,
    tmp: Path,
    name: str,
    label: str,
    golden: Golden,
) -> tuple[ParityResult, list[str], dict[str, Any]]:
    """Write the export into `tmp`, check parity (and the other runtime, if asked); raise on a failed check.
    Returns the parity result, warnings for the user, and the parity record (also in `parity.json`)."""
    fmt, gguf_type, verify_with = cfg.format, cfg.gguf_type, cfg.verify_with
    warnings: list[str] = []
    least = MIN_AGREEMENT[gguf_type] if fmt == "gguf" else None
    record: dict[str, Any] = {}
    if fmt == "gguf":
        with tempfile.TemporaryDirectory(prefix="tunewright-gguf-") as scratch:
            with status(f"writing the {gguf_type} GGUF export of {source.run_id} and reading it back"):
                gguf_path, readback = export_gguf(source, tmp, name, gguf_type, Path(scratch))
            exported = ModelSource(f"{label} ({gguf_path.name})", str(readback))
            parity = check_parity(source, exported, golden)
            record["top1_agreement"] = top1_agreement_with(exported, golden, parity.trained_tokens)
    else:
        with status(f"writing the {fmt} export of {source.run_id}"):
            warnings = export_model(source, fmt, tmp, cfg.max_shard_size)
        adapter = tmp if fmt == "adapter" else None
        exported = ModelSource(label, source.base if adapter else str(tmp), adapter, dtype=source.dtype)
        parity = check_parity(source, exported, golden)
    record.update(prompts=parity.prompts, answers=kinds(parity.trained), diverged=parity.diverged)
    if least is not None:
        record["min_top1_agreement"] = least
    write_json(tmp / "parity.json", record)
    _require(parity, record.get("top1_agreement"), least, f"the {gguf_type} export" if least else "export")
    if verify_with is None:
        return parity, warnings, record
    if verify_with == "llama.cpp":
        tokenizer = load_tokenizer(source.adapter if source.adapter is not None else source.base)
        answers, agreement, noted = llamacpp_check(gguf_path, tokenizer, golden, parity.trained_tokens, PARITY_TOKENS)
        warnings += noted
    else:
        answers, agreement, noted = vllm_answers(cfg.vllm, exported, golden, PARITY_TOKENS), None, []
    verified = compare_answers(golden, parity.trained, answers, structured=verify_with == "vllm")
    record["verified_with"] = {"engine": verify_with, "prompts": verified.prompts, "diverged": verified.diverged}
    if verify_with == "llama.cpp" and noted:
        record["verified_with"]["warnings"] = noted
    if agreement is not None:
        record["verified_with"]["top1_agreement"] = agreement
    write_json(tmp / "parity.json", record)
    _require(verified, agreement, least, f"the export run by {verify_with}")
    return parity, warnings, record


def _require(parity: ParityResult, agreement: float | None, least: float | None, what: str) -> None:
    """Exact answers, or for a GGUF export enough top-1 agreement; a CheckFailed naming the gap."""
    if least is not None and agreement is not None:
        if agreement < least:
            raise CheckFailed(
                f"{what} diverges from the trained model: it ranks the trained model's next token first on "
                f"{agreement:.1%} of its answer tokens (at least {least:.0%} expected of a correct conversion)"
            )
        return
    if not parity.passed:
        first = parity.diverged[0]
        raise CheckFailed(
            f"{what} diverges from the trained model on {len(parity.diverged)}/{parity.prompts} golden "
            f"prompts; first: {first['id']}: trained {first['trained']!r} vs export {first['export']!r}"
        )


def run_export(workspace: Path, cfg: ExportConfig, run: Run) -> tuple[ParityResult, Path]:
    """Export `cfg.run` to `exports/<name>` within `run`; the directory appears only if parity holds."""
    run_ref, fmt, gguf_type, allow_failed_eval = cfg.run, cfg.format, cfg.gguf_type, cfg.allow_failed_eval
    golden = resolve(workspace, cfg.golden)
    if fmt not in FORMATS:
        raise UserError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
    if fmt == "gguf" and gguf_type not in GGUF_TYPES:
        raise UserError(f"--gguf-type {gguf_type!r}: expected one of {', '.join(GGUF_TYPES)}")
    check_verifier(cfg.verify_with, fmt)
    source = resolve_model(workspace, run_ref)
    if source.run_id is None:
        raise UserError(f"{run_ref} is not a training run; export takes one (a train-… run id or latest:train)")
    out_dir = _target(workspace, source, fmt, cfg.name)
    verdict = latest_eval(workspace, source.run_id)
    if verdict is not None and not verdict.passed and not allow_failed_eval:
        raise CheckFailed(
            f"run {source.run_id}'s latest evaluation ({verdict.run_id}) is {verdict.verdict}: gate(s) "
            f"{verdict.failing()}; not exported. Pass --allow-failed-eval to export it anyway "
            "(recorded in the export's manifest and README)"
        )
    run.add_parent(source.run_id)
    if verdict is not None:
        run.add_parent(verdict.run_id)
    for path in source.files():
        run.add_input(path)
    run.add_input(golden)
    prompts = golden_prompts(golden)
    tmp = run.new_output_dir(out_dir)
    base_name = source.base_name or source.base
    export_label = f"{out_dir.parent.name}/{out_dir.name}"
    parity, warnings, record = _write_and_check(cfg, source, tmp, out_dir.parent.name, export_label, prompts)
    previous = versions(out_dir.parent)
    run.results.update(
        format=fmt,
        name=out_dir.parent.name,
        version=out_dir.name,
        previous_version=f"v{previous[-1]}" if previous else None,
        export_dir=run.rel(out_dir),
        source_run=source.run_id,
        dtype=source.dtype,
        gguf_type=gguf_type if fmt == "gguf" else None,
        base_model=base_record(workspace, base_name),
        parity_prompts=parity.prompts,
        parity_passed=True,
        verified_with=record.get("verified_with"),
        top1_agreement=record.get("top1_agreement"),
        warnings=warnings,
        eval=verdict.as_record() if verdict is not None else None,
        allow_failed_eval=allow_failed_eval,
    )
    readme = export_readme(export_label, fmt, tmp, run.results, run.results["eval"], allow_failed_eval)
    if fmt == "adapter":
        make_portable(tmp, base_name, readme)
    else:
        write_text(tmp / "README.md", readme)
    run.manifest_copies.append(tmp / "manifest.json")
    run.output_link(out_dir.parent / LATEST, out_dir.name)
    return parity, out_dir


def export_version(workspace: Path, cfg: ExportConfig, command: list[str]) -> tuple[Run, ParityResult, Path]:
    """`tunewright export` as a library call: the export run (recorded), its parity result and version directory."""
    with start_run(workspace, "export", command, cfg.recorded()) as run:
        parity, out_dir = run_export(workspace, cfg, run)
    return run, parity, out_dir
