"""`export --verify-with vllm | llama.cpp`: the export answered by the engine its users will run.

Parity through tunewright's own engine proves the files hold the trained model; this proves a
different runtime reads them the same way (tokenizer, chat template, stop tokens, weight
layout). The golden prompts are answered greedily by that runtime and must equal the trained
model's answers; prompts that offer tools are sent with them, and vLLM's parsed calls are
written back as the model writes calls, to be compared as calls (`parity.same_answer`).

- `vllm` (merged and adapter exports): vLLM pins its own transformers, so it is started as a
  server from its own environment (`runtimes/vllm.py`; the export's vLLM settings, which the
  CLI reads from `vllm:` in `configs/serve.yaml`) on a free local port, and asked over its OpenAI API.
  An adapter is served with `--enable-lora` on the recorded base. A dtype of `auto` becomes
  the trained model's dtype, so vLLM does not silently downcast a float32 model.
- `llama.cpp` (GGUF exports): llama-cpp-python in a child process (`runtimes/llamacpp.py`).
  The prompt is rendered with the chat template and tokenized by llama.cpp from the GGUF's
  own vocabulary, which must give the Hugging Face tokenizer's ids; the answers are
  generated greedily (no repetition penalty) and end where llama.cpp's end-of-generation
  tokens from the file say. The file is held to the same top-1 agreement as parity (see
  `parity.py`), read by llama.cpp's own kernels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

from tunewright.core import chat
from tunewright.core.errors import CheckFailed, UserError
from tunewright.core.model_source import ModelSource
from tunewright.core.progress import progress_bar
from tunewright.core.tools import written_reply
from tunewright.export.parity import Golden
from tunewright.runtimes.llamacpp import Job, read_gguf, require_llamacpp
from tunewright.runtimes.openai_client import OpenAIClient
from tunewright.runtimes.vllm import VllmConfig, started_vllm

VERIFIERS = {"vllm": ("merged", "adapter"), "llama.cpp": ("gguf",)}
VLLM_START_S = 900


def check_verifier(verifier: str | None, fmt: str) -> None:
    """Refuse a verifier that does not exist or does not read this format, before any work."""
    if verifier is None:
        return
    if verifier not in VERIFIERS:
        raise UserError(f"--verify-with {verifier!r}: expected one of {', '.join(VERIFIERS)}")
    if fmt not in VERIFIERS[verifier]:
        raise UserError(f"--verify-with {verifier} checks {'/'.join(VERIFIERS[verifier])} exports, not {fmt}")
    if verifier == "llama.cpp":
        require_llamacpp()


def llamacpp_check(
    gguf_path: Path,
    tokenizer: PreTrainedTokenizerBase,
    golden: Golden,
    trained_tokens: list[list[int]],
    max_new_tokens: int,
) -> tuple[list[str], float, list[str]]:
    """llama.cpp's greedy answers from the GGUF file, its top-1 agreement with the trained answers, and
    warnings for the user; a prompt it tokenizes differently, or a crash of llama.cpp, raises CheckFailed."""
    prompts = golden.prompts
    jobs = [
        Job(chat.render(tokenizer, p, True, t or None), chat.prompt_ids(tokenizer, p, t or None), a, max_new_tokens)
        for p, t, a in zip(prompts, golden.tools, trained_tokens, strict=True)
    ]
    with progress_bar("golden prompts on llama.cpp", total=len(jobs)) as advance:
        reading = read_gguf(gguf_path, jobs, torch.get_num_threads(), advance)
    reads = reading.reads
    for conversation, job, read in zip(prompts, jobs, reads, strict=True):
        if read.text is None:
            raise CheckFailed(
                f"llama.cpp tokenizes the golden prompt {conversation[-1]['content'][:60]!r} differently from the "
                f"trained model's tokenizer ({len(read.tokens)} vs {len(job.prompt)} tokens)"
            )
    warnings = []
    if reading.crash is not None:
        warnings.append(
            f"llama.cpp with its repacked CPU kernels {reading.crash} reading {gguf_path.name} on this machine (a "
            "fault of the llama.cpp build, seen on CPUs with AMX); the file was verified with its plain kernels: "
            "run it here with `llama-server --no-repack`"
        )
    agreement = sum(r.hits for r in reads) / max(sum(r.total for r in reads), 1)
    return [r.text or "" for r in reads], agreement, warnings


def vllm_answers(vllm: VllmConfig, export: ModelSource, golden: Golden, max_new_tokens: int) -> list[str]:
    """Greedy answers of vLLM serving the export, started from its own environment and stopped after; the tool
    calls of a reply are written after its content as the model writes them."""
    if vllm.dtype == "auto":  # the trained model's dtype: vLLM would otherwise downcast a float32 model
        vllm = vllm.model_copy(update={"dtype": export.dtype})
    with started_vllm(vllm, export, "export", 2048, VLLM_START_S) as url:
        client = OpenAIClient(url, concurrency=4)
        body = {"model": "export", "temperature": 0, "max_tokens": max_new_tokens}

        def one(job: tuple[list[dict[str, Any]], list[dict[str, Any]]]) -> dict[str, Any]:
            messages, tools = job
            return client.chat({**body, "messages": messages, **({"tools": tools} if tools else {})})

        try:
            with progress_bar("golden prompts on vLLM", total=len(golden.prompts)) as advance:
                out = client.map(one, list(zip(golden.prompts, golden.tools, strict=True)), advance)
        finally:
            client.close()
    return [written_reply(o["choices"][0]["message"]) for o in out]
