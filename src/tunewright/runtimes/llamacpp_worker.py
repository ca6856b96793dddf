"""`python -m tunewright.runtimes.llamacpp_worker`: read golden prompts with llama.cpp, in its own process.

The parent (`llamacpp.py`) writes one JSON request to stdin: the GGUF path, the context
size, threads, and the jobs (each: the rendered prompt text, the prompt's ids from the
Hugging Face tokenizer, the trained model's answer ids, and how many tokens to generate).
For each job this writes one `RESULT <json>` line to stdout: how llama.cpp tokenizes the
prompt text from the file's own vocabulary, its greedy answer (no repetition penalty,
ending where the file's end-of-generation tokens say), and, reading the trained answer
teacher-forced, how many of its tokens llama.cpp ranks first. llama.cpp may print its own
lines; the parent reads only the tagged ones.

With `"repack": false` the weights are not repacked into llama.cpp's extra CPU buffer types
(its AMX and other repacked kernels; `llama-server --no-repack`). llama-cpp-python does not
expose that setting, so the default model parameters it starts from are wrapped here.
"""

from __future__ import annotations

import json
import sys
from typing import Any

TAG = "RESULT "


def _job(llm: Any, job: dict[str, Any]) -> dict[str, Any]:
    import numpy as np

    prompt, answer = job["prompt"], job["answer"]
    theirs = llm.tokenize(job["text"].encode("utf-8"), add_bos=False, special=True)
    result: dict[str, Any] = {"tokens": theirs, "text": None, "hits": 0, "total": len(answer)}
    if theirs != prompt:
        return result
    llm.reset()
    out = llm.create_completion(
        prompt, max_tokens=job["max_tokens"], temperature=0.0, top_k=1, top_p=1.0, min_p=0.0, repeat_penalty=1.0
    )
    result["text"] = out["choices"][0]["text"]
    if answer:
        llm.reset()
        llm.eval(prompt + answer)
        ranked = np.asarray(llm.scores[len(prompt) - 1 : len(prompt) + len(answer) - 1]).argmax(axis=-1)
        result["hits"] = int((ranked == np.asarray(answer)).sum())
    return result


def _without_repacking() -> None:
    import llama_cpp.llama as high_level

    defaults = high_level.llama_cpp.llama_model_default_params

    def params() -> Any:
        found = defaults()
        found.use_extra_bufts = False
        return found

    high_level.llama_cpp.llama_model_default_params = params


def main() -> None:
    """Answer the request on stdin, one tagged result line per job."""
    from llama_cpp import Llama

    request = json.loads(sys.stdin.read())
    if not request.get("repack", True):
        _without_repacking()
    llm = Llama(
        model_path=request["gguf"],
        n_ctx=request["n_ctx"],
        n_threads=request["threads"],
        logits_all=True,
        verbose=False,
    )
    for job in request["jobs"]:
        print(TAG + json.dumps(_job(llm, job)), flush=True)
    llm.close()


if __name__ == "__main__":
    main()
