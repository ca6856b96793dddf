"""Making a saved PEFT adapter portable: no machine-specific base path, a README that says what it is.

`save_pretrained` writes the absolute path the base was loaded from into
`adapter_config.json` and an empty model-card template as `README.md`. The adapter is
rewritten to name its base as the training config named it (a hub id, or a path relative
to the workspace), which `PeftModel.from_pretrained(base, path)` and vLLM ignore and
`AutoPeftModelForCausalLM` resolves where that name is valid; tunewright also records the
base's content hash beside it and checks it when it loads the adapter.
"""

from __future__ import annotations

import json
from pathlib import Path

from tunewright.core.io import write_json, write_text


def make_portable(adapter_dir: Path, base_name: str, readme: str) -> None:
    """Point `adapter_config.json` at `base_name` and replace the README."""
    config_path = adapter_dir / "adapter_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["base_model_name_or_path"] = base_name
    write_json(config_path, config)
    write_text(adapter_dir / "README.md", readme)


def adapter_summary(adapter_dir: Path) -> str:
    """`LoRA r=16, alpha=32 on q_proj, v_proj` from an adapter's config."""
    config = json.loads((adapter_dir / "adapter_config.json").read_text(encoding="utf-8"))
    kind = "DoRA" if config.get("use_dora") else config.get("peft_type", "LoRA").title().replace("Lora", "LoRA")
    targets = config.get("target_modules") or []
    targets = ", ".join(sorted(targets)) if isinstance(targets, list) else str(targets)
    return f"{kind} r={config.get('r')}, alpha={config.get('lora_alpha')} on {targets}"
