"""The README written into every export: what it is, where it came from, how to load it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tunewright.core.adapter_files import adapter_summary


def _eval_line(verdict: dict[str, Any] | None, allowed_failure: bool) -> str:
    if verdict is None:
        return "Evaluation: this training run had not been evaluated when it was exported."
    gates = "every gate passed" if verdict["passed"] else f"gate(s) {', '.join(verdict['failed_gates'])}"
    line = f"Evaluation: `{verdict['run_id']}` {verdict['verdict']}, {gates}."
    if allowed_failure and not verdict["passed"]:
        line += " It was exported anyway with `--allow-failed-eval`."
    return line


def _parity_line(fmt: str, results: dict[str, Any]) -> str:
    n, agreement = results["parity_prompts"], results.get("top1_agreement")
    verified = results.get("verified_with")
    if agreement is not None:
        line = (
            f"Parity: reading the trained model's answers to {n} golden prompts, the weights read back from this "
            f"{results['gguf_type']} file rank the same next token first {agreement:.1%} of the time"
        )
        if verified:
            line += f" ({verified['engine']}: {verified['top1_agreement']:.1%})"
        return line + " (`parity.json`; rounding moves a few near-ties, a conversion fault moves many)."
    what = "the weights read back from the GGUF file" if fmt == "gguf" else "the export"
    line = f"Parity: {what} answered all {n} golden prompts exactly as the trained model did"
    if verified:
        line += f", and so did {verified['engine']} running it"
    return line + " (`parity.json`)."


def export_readme(
    name: str, fmt: str, out_dir: Path, results: dict[str, Any], verdict: dict[str, Any] | None, allowed: bool
) -> str:
    """Markdown README for an export of format `fmt` built in `out_dir`."""
    base = results["base_model"]
    digest = f" (content sha256 `{base['sha256'][:16]}…`)" if base.get("sha256") else ""
    run = results["source_run"]
    if fmt == "adapter":
        what = f"A PEFT adapter ({adapter_summary(out_dir)}) for the base model `{base['name_or_path']}`{digest}."
        use = [
            "```python",
            "from peft import PeftModel",
            "from transformers import AutoModelForCausalLM, AutoTokenizer",
            "",
            f'base = AutoModelForCausalLM.from_pretrained("{base["name_or_path"]}")',
            f'model = PeftModel.from_pretrained(base, "exports/{name}")',
            f'tokenizer = AutoTokenizer.from_pretrained("exports/{name}")',
            "```",
            "",
            f"vLLM: `vllm serve {base['name_or_path']} --enable-lora --lora-modules {name}=exports/{name}`; "
            f"tunewright: `tunewright serve exports/{name}` (finds the base and checks its content hash).",
        ]
    elif fmt == "gguf":
        gguf = next(out_dir.glob("*.gguf")).name
        what = (
            f"A {results['gguf_type']} GGUF file for llama.cpp, Ollama and LM Studio: training run `{run}` merged "
            f"into the base `{base['name_or_path']}`{digest}, with its tokenizer and chat template."
        )
        use = [
            f"llama.cpp: `llama-cli -m exports/{name}/{gguf} -cnv` or `llama-server -m exports/{name}/{gguf}`; "
            f"Ollama: a Modelfile with `FROM ./{gguf}`.",
            "",
            "```python",
            "from llama_cpp import Llama",
            "",
            f'llm = Llama(model_path="exports/{name}/{gguf}")',
            'llm.create_chat_completion(messages=[{"role": "user", "content": "..."}], temperature=0)',
            "```",
        ]
    else:
        what = f"A standalone model: training run `{run}` merged into the base `{base['name_or_path']}`{digest}."
        use = [
            "```python",
            "from transformers import AutoModelForCausalLM, AutoTokenizer",
            "",
            f'model = AutoModelForCausalLM.from_pretrained("exports/{name}")',
            f'tokenizer = AutoTokenizer.from_pretrained("exports/{name}")  # chat template included',
            "```",
            "",
            f"vLLM: `vllm serve exports/{name}`; tunewright: `tunewright serve exports/{name}`.",
        ]
    return "\n".join(
        [
            f"# {name}",
            "",
            what,
            "",
            f"Exported by tunewright from training run `{run}` (see `manifest.json` for every input, output and "
            "version, and `tunewright runs lineage` in the workspace for the data it learned from).",
            "",
            _eval_line(verdict, allowed),
            "",
            _parity_line(fmt, results),
            "",
            "## Use",
            "",
            *use,
            "",
            *(["## Warnings", "", *(f"- {w}" for w in results["warnings"]), ""] if results.get("warnings") else []),
        ]
    )
