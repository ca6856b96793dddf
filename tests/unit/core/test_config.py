from pathlib import Path

import pytest
from pydantic import Field

from tunewright.core.config import StrictModel, apply_overrides, instantiate, load_config, resolve_target, validate
from tunewright.core.errors import ConfigError


class Inner(StrictModel):
    rank: int = 8
    name: str = "x"


class Outer(StrictModel):
    inner: Inner = Field(default_factory=Inner)
    lr: float = 0.1
    tags: list[str] = Field(default_factory=list)


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def test_precedence_defaults_yaml_overrides(tmp_path):
    cfg = load_config(write(tmp_path, "lr: 0.5\ninner: {rank: 4}\n"), Outer, ["inner.rank=16", "tags=[a, b]"])
    assert cfg.lr == 0.5
    assert cfg.inner.rank == 16
    assert cfg.inner.name == "x"
    assert cfg.tags == ["a", "b"]


def test_unknown_key_is_named_with_its_path(tmp_path):
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, "inner: {rnak: 4}\n"), Outer)
    assert "inner.rnak: unknown key" in str(exc.value)
    assert str(tmp_path / "c.yaml") in str(exc.value)


def test_wrong_type_names_key_and_found_value(tmp_path):
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, "inner: {rank: lots}\n"), Outer)
    assert "inner.rank" in str(exc.value)
    assert "'lots'" in str(exc.value)


def test_unknown_override_key_is_rejected(tmp_path):
    with pytest.raises(ConfigError, match=r"inner\.nope: unknown key"):
        load_config(write(tmp_path, "lr: 1\n"), Outer, ["inner.nope=3"])


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "absent.yaml", Outer)
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "lr: [1,\n"), Outer)
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(write(tmp_path, "- 1\n- 2\n"), Outer)


def test_override_syntax_and_section_conflicts():
    with pytest.raises(ConfigError, match=r"key\.path=value"):
        apply_overrides({}, ["novalue"])
    with pytest.raises(ConfigError, match="lr is a value"):
        apply_overrides({"lr": 1}, ["lr.x=2"])
    original = {"a": {"b": 1}}
    assert apply_overrides(original, ["a.b=2"]) == {"a": {"b": 2}}
    assert original == {"a": {"b": 1}}


def test_target_allowlist_and_kind():
    import torch

    key, kind = "training.optimizer._target_", torch.optim.Optimizer
    assert resolve_target("torch.optim.AdamW", key, kind) is torch.optim.AdamW
    with pytest.raises(ConfigError, match=r"training\.optimizer\._target_: 'os\.system' is not under an allowed"):
        resolve_target("os.system", key, kind)
    with pytest.raises(ConfigError, match="cannot be imported"):
        resolve_target("torch.optim.NoSuchThing", key, kind)
    # under a trusted prefix, but not an optimizer: refused before anything is called
    for target in ("torch.hub.load", "torch.save", "torch.load"):
        with pytest.raises(
            ConfigError, match=r"is a function; expected a subclass of torch\.optim\.optimizer\.Optimizer"
        ):
            resolve_target(target, key, kind)
    with pytest.raises(ConfigError, match="is a class of another kind"):
        resolve_target("torch.nn.Linear", key, kind)
    with pytest.raises(ConfigError, match="is a class of another kind"):
        resolve_target("collections.OrderedDict", key, kind, allow_any=True)


def test_opt_in_admits_an_optimizer_outside_the_prefixes(tmp_path, monkeypatch):
    import torch

    (tmp_path / "myopt.py").write_text("import torch\n\nclass Opt(torch.optim.SGD):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match="not under an allowed prefix"):
        resolve_target("myopt.Opt", "k", torch.optim.Optimizer)
    assert resolve_target("myopt.Opt", "k", torch.optim.Optimizer, allow_any=True).__name__ == "Opt"


def test_instantiate_names_the_key_when_the_constructor_refuses():
    import torch

    params = [torch.nn.Parameter(torch.zeros(2))]
    with pytest.raises(ConfigError, match=r"training\.optimizer: torch\.optim\.adamw\.AdamW rejected its arguments"):
        instantiate(torch.optim.AdamW, "training.optimizer", params, lr=1e-3, momentum=0.9)


def test_train_config_refuses_a_dangerous_target_naming_the_key():
    from tunewright.train.config import TrainConfig

    base = {"model": {"name_or_path": "m"}}
    for target in ("torch.hub.load", "torch.save"):
        data = {**base, "training": {"optimizer": {"_target_": target}}}
        with pytest.raises(ConfigError, match=r"training\.optimizer: _target_: .* expected a subclass"):
            validate(data, TrainConfig, "c.yaml")
    ok = validate({**base, "training": {"optimizer": {"_target_": "torch.optim.SGD"}}}, TrainConfig, "c.yaml")
    assert ok.training.optimizer.target == "torch.optim.SGD"


def test_override_indexes_into_lists():
    data = {"sources": [{"path": "a"}, {"path": "b"}]}
    assert apply_overrides(data, ["sources.1.path=c"])["sources"][1] == {"path": "c"}
    with pytest.raises(ConfigError, match="not an index of a 2-item list"):
        apply_overrides(data, ["sources.5.path=c"])


def test_shipped_configs_validate(tmp_path):
    from tunewright.core.workspace import init_workspace
    from tunewright.curate.config import CurateConfig
    from tunewright.evaluate.config import EvalConfig
    from tunewright.serve.config import ServeConfig
    from tunewright.train.config import TrainConfig

    init_workspace(tmp_path)
    for name, model in [
        ("curate.yaml", CurateConfig),
        ("sft-lora.yaml", TrainConfig),
        ("eval.yaml", EvalConfig),
        ("serve.yaml", ServeConfig),
    ]:
        load_config(tmp_path / "configs" / name, model)


@pytest.mark.parametrize("stage", ["curate", "train", "eval", "serve"])
def test_every_config_key_is_described_and_the_description_round_trips(tmp_path, stage):
    import importlib

    import yaml

    from tunewright.cli.config_cmd import STAGES
    from tunewright.core.config_doc import describe_config, undescribed_fields
    from tunewright.core.workspace import init_workspace

    name, module, cls_name = STAGES[stage]
    model = getattr(importlib.import_module(module), cls_name)
    assert undescribed_fields(model) == []
    init_workspace(tmp_path)
    cfg = load_config(tmp_path / "configs" / name, model)
    text = describe_config(cfg)
    assert validate(yaml.safe_load(text), model, "shown") == cfg
    assert all("  # " in line for line in text.splitlines())
