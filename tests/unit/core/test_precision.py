"""`dtype: auto` is the model's own type where the machine computes it fast, else float32; other values as given."""

import json

import pytest

from tunewright.core import precision
from tunewright.core.config import load_config
from tunewright.core.errors import ConfigError
from tunewright.core.model_source import ModelSource
from tunewright.serve.config import ServeConfig


@pytest.fixture
def model_dir(tmp_path):
    def make(declared):
        (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama", "torch_dtype": declared}))
        return tmp_path

    return make


def test_auto_takes_the_models_dtype_only_where_it_runs_fast(model_dir, monkeypatch):
    monkeypatch.setattr(precision, "_cpu_flags", lambda: frozenset({"avx512f", "amx_bf16"}))
    assert precision.fast_dtypes("cpu") == ["float32", "bfloat16"]
    assert precision.resolve_dtype("auto", model_dir("bfloat16")) == "bfloat16"
    assert precision.resolve_dtype("auto", model_dir("float16")) == "float32"  # no fp16 units on this CPU
    assert precision.resolve_dtype("auto", model_dir("float32")) == "float32"
    monkeypatch.setattr(precision, "_cpu_flags", lambda: frozenset({"avx2"}))
    assert precision.resolve_dtype("auto", model_dir("bfloat16")) == "float32"  # bf16 would be emulated: slower
    assert precision.resolve_dtype("bfloat16", model_dir("float32")) == "bfloat16"  # asked for: as asked


def test_a_directory_without_a_config_or_a_hub_id_runs_in_float32(tmp_path):
    assert precision.model_dtype(tmp_path) is None
    assert precision.resolve_dtype("auto", "org/model-on-the-hub") == "float32"


def test_serve_takes_a_dtype_and_refuses_an_unknown_one(model_dir, monkeypatch):
    monkeypatch.setattr(precision, "_cpu_flags", lambda: frozenset({"avx512_bf16"}))
    source = ModelSource("m", str(model_dir("bfloat16")))
    assert load_config(None, ServeConfig, ["dtype=float32"]).served(source).dtype == "float32"
    assert load_config(None, ServeConfig, []).served(source).dtype == "bfloat16"
    with pytest.raises(ConfigError, match="dtype"):
        load_config(None, ServeConfig, ["dtype=int8"])


def test_vllm_takes_the_serve_dtype_unless_its_own_is_set(model_dir):
    from tunewright.runtimes.vllm import VllmLaunch, vllm_command

    def dtype_of(*overrides):
        cfg = load_config(None, ServeConfig, list(overrides))
        source = ModelSource("m", str(model_dir("float32")))
        cmd = vllm_command(cfg.vllm_settings(), "python", source, "m", {}, VllmLaunch("127.0.0.1", 8000, 2048, 8))
        return cmd[cmd.index("--dtype") + 1]

    assert dtype_of("dtype=bfloat16") == "bfloat16"
    assert dtype_of("dtype=bfloat16", "vllm.dtype=float32") == "float32"
    assert dtype_of() == "auto"  # vLLM resolves its own auto


def test_a_dtype_the_cpu_lacks_units_for_is_named_slow(monkeypatch):
    monkeypatch.setattr(precision, "_cpu_flags", lambda: frozenset({"avx2"}))
    warning = precision.slow_dtype_warning("bfloat16")
    assert warning and "avx512_bf16 or amx_bf16" in warning and "float32" in warning
    assert precision.slow_dtype_warning("float32") is None
    monkeypatch.setattr(precision, "_cpu_flags", lambda: frozenset({"amx_bf16"}))
    assert precision.slow_dtype_warning("bfloat16") is None
    assert "avx512_fp16" in precision.slow_dtype_warning("float16")


def test_eval_runs_a_local_model_in_the_dtype_serve_would(model_dir, monkeypatch, tmp_path):
    from tunewright.evaluate.config import EvalConfig
    from tunewright.evaluate.stage import TargetSpec, make_target

    monkeypatch.setattr(precision, "_cpu_flags", lambda: frozenset({"amx_bf16"}))
    model = model_dir("bfloat16")
    task = ["tasks=[{name: t, data: d.jsonl}]"]
    for overrides in ([], ["dtype=float32"]):
        serve = load_config(None, ServeConfig, overrides).served(ModelSource("m", str(model)))
        cfg = load_config(None, EvalConfig, [*task, *(f"generation.{o}" for o in overrides)])
        target = make_target(tmp_path, TargetSpec(ref=str(model)), cfg)
        assert target.source.dtype == serve.dtype == ("float32" if overrides else "bfloat16")
        assert target.describe()["dtype"] == serve.dtype


@pytest.fixture
def gpus(monkeypatch):
    """Pretend PyTorch sees `n` CUDA GPUs with bf16 (device resolution only; nothing runs on them)."""

    def see(n):
        monkeypatch.setattr(precision.torch.cuda, "is_available", lambda: n > 0)
        monkeypatch.setattr(precision.torch.cuda, "device_count", lambda: n)
        monkeypatch.setattr(precision.torch.cuda, "is_bf16_supported", lambda: True)

    return see


def test_auto_device_is_the_first_gpu_where_there_is_one_and_its_dtype_follows(model_dir, gpus, monkeypatch):
    monkeypatch.setattr(precision, "_cpu_flags", lambda: frozenset({"avx2"}))  # this CPU would run bf16 slowly
    source = ModelSource("m", str(model_dir("bfloat16")))
    gpus(0)
    assert precision.resolve_device("auto") == "cpu"
    assert load_config(None, ServeConfig, []).served(source).device == "cpu"
    assert load_config(None, ServeConfig, []).served(source).dtype == "float32"
    gpus(2)
    assert precision.resolve_device("auto") == "cuda:0"
    assert precision.resolve_device("cuda") == "cuda:0"
    assert precision.resolve_device("cuda:1") == "cuda:1"
    served = load_config(None, ServeConfig, []).served(source)
    assert (served.device, served.dtype) == ("cuda:0", "bfloat16")  # bf16 is fast on the GPU
    assert load_config(None, ServeConfig, ["device=cpu"]).served(source).dtype == "float32"
    vllm = load_config(None, ServeConfig, ["engine=vllm"]).served(source)
    assert vllm.device == "cpu"  # vLLM picks its own device in its own environment


def test_a_gpu_that_is_not_there_is_an_error_naming_the_setting(gpus):
    from tunewright.core.errors import UserError

    gpus(1)
    with pytest.raises(UserError, match=r"device: cuda:1 .* 1 CUDA GPU"):
        precision.resolve_device("cuda:1")
    gpus(0)
    with pytest.raises(UserError, match=r"generation.device: cuda .* 0 CUDA GPU"):
        precision.resolve_device("cuda", key="generation.device")
    with pytest.raises(ConfigError, match="device"):
        load_config(None, ServeConfig, ["device=tpu"])


def test_eval_runs_a_local_model_on_the_device_serve_would(model_dir, gpus, tmp_path):
    from tunewright.evaluate.config import EvalConfig
    from tunewright.evaluate.stage import TargetSpec, make_target

    gpus(1)
    model = model_dir("float32")
    task = ["tasks=[{name: t, data: d.jsonl}]"]
    for overrides in ([], ["device=cpu"]):
        serve = load_config(None, ServeConfig, overrides).served(ModelSource("m", str(model)))
        cfg = load_config(None, EvalConfig, [*task, *(f"generation.{o}" for o in overrides)])
        target = make_target(tmp_path, TargetSpec(ref=str(model)), cfg)
        assert target.describe()["device"] == serve.device == ("cpu" if overrides else "cuda:0")
