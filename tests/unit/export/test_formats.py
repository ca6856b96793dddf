import json
import shutil

import pytest

from tunewright.core.errors import UserError
from tunewright.core.model_source import ModelSource
from tunewright.export.merged import export_model, vllm_warnings


def write_adapter_config(path, **cfg):
    path.mkdir()
    (path / "adapter_config.json").write_text(json.dumps(cfg))
    return path


def test_vllm_warnings_name_what_vllm_would_refuse(tmp_path):
    ok = write_adapter_config(tmp_path / "ok", r=8, target_modules=["q_proj", "v_proj"])
    assert vllm_warnings(ok) == []
    bad = write_adapter_config(
        tmp_path / "bad", r=64, target_modules=["q_proj", "lm_head"], modules_to_save=["embed_tokens"], use_dora=True
    )
    found = " | ".join(vllm_warnings(bad))
    assert "modules_to_save ['embed_tokens']" in found and "rank 64 is above vLLM's default --max-lora-rank 16" in found
    assert "['lm_head']" in found and "DoRA" in found


def test_merging_into_a_quantized_base_is_refused(tiny_base, tiny_adapters, tmp_path):
    quantized = tmp_path / "q-base"
    shutil.copytree(tiny_base, quantized)
    cfg = json.loads((quantized / "config.json").read_text())
    cfg["quantization_config"] = {"quant_method": "bitsandbytes", "load_in_4bit": True}
    (quantized / "config.json").write_text(json.dumps(cfg))
    source = ModelSource("q", str(quantized), tiny_adapters["alpha"])
    with pytest.raises(UserError, match="is quantized; merging an adapter into rounded weights is lossy"):
        export_model(source, "merged", tmp_path / "out")
    assert not (tmp_path / "out").exists()
