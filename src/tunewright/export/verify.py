"""`export --verify-with vllm | llama.cpp`: the export answered by the engine its users will run.

Parity through tunewright's own engine proves the files hold the trained model; this proves a
different runtime reads them the same way (tokenizer, chat template, stop tokens, weight
layout). The golden prompts are answered greedily by that runtime and must equal the trained
model's answers.

- `vllm` (merged and adapter exports): vLLM pins its own transformers, so it is started as a
  server from its own environment (`vllm.python` in `configs/serve.yaml` or `$TUNEWRIGHT_VLLM`,
  with that config's `vllm.extra_args`) on a free local port, and asked over its OpenAI API.
  An adapter is served with `--enable-lora` on the recorded base. A dtype of `auto` becomes
  the trained model's dtype, so vLLM does not silently downcast a float32 model.
- `llama.cpp` (GGUF exports): through `llama-cpp-python` in this environment. The prompt is
  rendered with the chat template and tokenized by llama.cpp from the GGUF's own vocabulary,
  which must give the Hugging Face tokenizer's ids; the answer is generated greedily (no
  repetition penalty) and ends where llama.cpp's end-of-generation tokens from the file say.
  A quantized file is held to the same top-1 agreement as parity (see `parity.py`), read by
  llama.cpp's own kernels.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from transformers import PreTrainedTokenizerBase

from tunewright.core.config import load_config
from tunewright.core.errors import CheckFailed, UserError
from tunewright.core.model_source import ModelSource
from tunewright.core.progress import progress_bar, status
from tunewright.engine.engine import chat_prompt_ids

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
        try:
            import llama_cpp  # noqa: F401
        except ImportError:
            raise UserError("--verify-with llama.cpp needs llama-cpp-python: pip install llama-cpp-python") from None


def _llama(gguf_path: Path, n_ctx: int, logits_all: bool = False) -> Any:
    import torch
    from llama_cpp import Llama

    with status(f"loading {gguf_path.name} in llama.cpp"):
        return Llama(
            model_path=str(gguf_path),
            n_ctx=n_ctx,
            n_threads=torch.get_num_threads(),
            logits_all=logits_all,
            verbose=False,
        )


def _check_tokenization(llm: Any, tokenizer: PreTrainedTokenizerBase, conversation: list[dict[str, str]]) -> list[int]:
    """The prompt's ids; llama.cpp must tokenize the rendered prompt to the same ids from the GGUF vocabulary."""
    prompt = chat_prompt_ids(tokenizer, conversation)
    text = tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
    theirs = llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
    if theirs != prompt:
        raise CheckFailed(
            f"llama.cpp tokenizes the golden prompt {conversation[-1]['content'][:60]!r} differently from the "
            f"trained model's tokenizer ({len(theirs)} vs {len(prompt)} tokens)"
        )
    return prompt


def llamacpp_answers(
    gguf_path: Path, tokenizer: PreTrainedTokenizerBase, prompts: list[list[dict[str, str]]], max_new_tokens: int
) -> list[str]:
    """Greedy answers of llama.cpp from the GGUF file; a prompt it tokenizes differently is an error."""
    longest = max(len(chat_prompt_ids(tokenizer, p)) for p in prompts) + max_new_tokens
    llm = _llama(gguf_path, longest)
    answers = []
    with progress_bar("golden prompts on llama.cpp", total=len(prompts)) as advance:
        for conversation in prompts:
            prompt = _check_tokenization(llm, tokenizer, conversation)
            out = llm.create_completion(
                prompt, max_tokens=max_new_tokens, temperature=0.0, top_k=1, top_p=1.0, min_p=0.0, repeat_penalty=1.0
            )
            answers.append(out["choices"][0]["text"])
            advance(1)
    llm.close()
    return answers


def llamacpp_agreement(
    gguf_path: Path,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[list[dict[str, str]]],
    trained_tokens: list[list[int]],
) -> float:
    """Share of the trained model's answer tokens llama.cpp ranks first when reading those answers."""
    import numpy as np

    longest = max(len(chat_prompt_ids(tokenizer, p)) + len(t) for p, t in zip(prompts, trained_tokens, strict=True))
    llm = _llama(gguf_path, longest, logits_all=True)
    hits = total = 0
    with progress_bar("trained answers read by llama.cpp", total=len(prompts)) as advance:
        for conversation, answer in zip(prompts, trained_tokens, strict=True):
            prompt = _check_tokenization(llm, tokenizer, conversation)
            llm.reset()
            llm.eval(prompt + answer)
            ranked = np.asarray(llm.scores[len(prompt) - 1 : len(prompt) + len(answer) - 1]).argmax(axis=-1)
            hits += int((ranked == np.asarray(answer)).sum())
            total += len(answer)
            advance(1)
    llm.close()
    return hits / max(total, 1)


def _vllm_config(workspace: Path, dtype: str, max_model_len: int) -> Any:
    from tunewright.serve.config import ServeConfig

    path = workspace / "configs" / "serve.yaml"
    cfg = load_config(path if path.is_file() else None, ServeConfig, [])
    cfg.host, cfg.batching.max_model_len = "127.0.0.1", max_model_len
    if cfg.vllm.dtype == "auto":
        cfg.vllm.dtype = dtype
    return cfg


def vllm_answers(
    workspace: Path, export: ModelSource, prompts: list[list[dict[str, str]]], max_new_tokens: int
) -> list[str]:
    """Greedy answers of vLLM serving the export, started from its own environment and stopped after."""
    from tunewright.evaluate.client import OpenAIClient
    from tunewright.serve.app import free_port
    from tunewright.serve.vllm import stop_process, vllm_command, vllm_python, wait_ready

    cfg = _vllm_config(workspace, export.dtype, 2048)
    port = free_port()
    cmd = vllm_command(cfg, vllm_python(cfg), export, "export", {}, port, None)
    env = {"VLLM_CPU_KVCACHE_SPACE": "2", **os.environ, "HF_HUB_OFFLINE": "1"}
    with tempfile.TemporaryFile(mode="w+") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
        try:
            with status("starting vLLM on the export"):
                ready = wait_ready(proc, cfg.host, port, VLLM_START_S)
            if not ready:
                log.seek(0)
                raise CheckFailed(f"vLLM did not start on the export; its log ends:\n{log.read()[-3000:]}")
            client = OpenAIClient(f"http://{cfg.host}:{port}/v1", concurrency=4)
            body = {"model": "export", "temperature": 0, "max_tokens": max_new_tokens}
            with progress_bar("golden prompts on vLLM", total=len(prompts)) as advance:
                out = client.map(lambda m: client.chat({**body, "messages": m}), prompts, advance)
            client.close()
            return [o["choices"][0]["message"]["content"] or "" for o in out]
        finally:
            stop_process(proc)
