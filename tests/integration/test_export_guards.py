"""Export guards and portability: a failed eval blocks the export, names are never overwritten
silently, an adapter export names its base portably, and lineage follows what each run consumed."""

import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from tunewright.cli.main import main
from tunewright.core import chat
from tunewright.core.errors import UserError
from tunewright.core.export_versions import export_name
from tunewright.core.model_source import resolve_model
from tunewright.engine import Engine

SHORT = ["training.max_steps=20", "training.eval_every=10", "checkpoint.every=null"]
FORMAT = "{type: format, pattern: '^First step: [^\\n]+'}"
EVAL_FAST = [
    "generation.max_new_tokens=24",
    f"tasks=[{{name: golden, data: data/raw/eval/golden.jsonl, scorers: [{FORMAT}]}}]",
]
GATE = ["gates=[{metric: golden.format_rate, op: '>=', threshold: 0.99}]"]


def manifest(path: Path) -> dict:
    return json.loads((path / "manifest.json").read_text())


def runs(ws: Path, stage: str) -> list[dict]:
    found = [manifest(p) for p in (ws / "runs").glob(f"{stage}-*")]
    return sorted(found, key=lambda m: m["started_at"])


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_base):
    from tunewright.core.workspace import init_workspace
    from tunewright.demo.sample_data import write_sample_data

    ws = tmp_path_factory.mktemp("export") / "ws"
    init_workspace(ws)
    write_sample_data(ws / "data/raw")
    shutil.copytree(tiny_base, ws / "models/tiny-base")
    assert main(["curate", "-w", str(ws)]) == 0
    assert main(["train", "-w", str(ws), *SHORT]) == 0
    return ws


def test_a_failed_eval_blocks_the_export_unless_allowed_and_recorded(trained, capsys):
    ws = trained
    assert main(["eval", "-w", str(ws), *EVAL_FAST, *GATE]) == 1
    eval_id = runs(ws, "eval")[-1]["run_id"]
    capsys.readouterr()
    assert main(["export", "latest:train", "--name", "blocked", "-w", str(ws)]) == 1
    err = capsys.readouterr().err
    assert f"latest evaluation ({eval_id}) is NO-GO: gate(s) golden.format_rate (FAIL)" in err
    assert "--allow-failed-eval" in err
    assert not (ws / "exports/blocked").exists()  # no version, no empty name directory
    assert main(["export", "latest:train", "--name", "blocked", "--allow-failed-eval", "-w", str(ws)]) == 0
    exported = manifest(ws / "exports/blocked/v1")
    assert exported["results"]["eval"] == {
        "run_id": eval_id,
        "verdict": "NO-GO",
        "passed": False,
        "failed_gates": ["golden.format_rate (FAIL)"],
    }
    assert exported["results"]["allow_failed_eval"] is True and exported["config"]["allow_failed_eval"] is True
    assert eval_id in exported["parents"]
    assert "NO-GO, gate(s) golden.format_rate (FAIL)" in (ws / "exports/blocked/latest/README.md").read_text()


def test_exports_of_one_name_are_versions_never_overwritten(trained, capsys):
    ws = trained
    assert main(["eval", "-w", str(ws), *EVAL_FAST, "gates=[]"]) == 0  # the latest eval now passes
    assert main(["export", "latest:train", "--name", "taken", "-w", str(ws)]) == 0
    first = (ws / "exports/taken/v1/model.safetensors").read_bytes()
    assert os.readlink(ws / "exports/taken/latest") == "v1"
    capsys.readouterr()
    assert main(["export", "latest:train", "--name", "taken", "-w", str(ws)]) == 0
    assert "exports/taken/v2" in capsys.readouterr().out
    assert (ws / "exports/taken/v1/model.safetensors").read_bytes() == first  # the first version is untouched
    assert os.readlink(ws / "exports/taken/latest") == "v2"
    second = manifest(ws / "exports/taken/v2")
    assert second["results"]["version"] == "v2" and second["results"]["previous_version"] == "v1"
    assert {o["path"] for o in second["outputs"]} >= {"exports/taken/v2/model.safetensors", "exports/taken/latest"}
    assert resolve_model(ws, "exports/taken").base == str(ws / "exports/taken/v2")
    assert resolve_model(ws, "exports/taken/v1").base == str(ws / "exports/taken/v1")
    assert main(["export", "latest:train", "--name", "../escape", "-w", str(ws)]) == 2
    assert main(["export", "latest:train", "--name", "taken", "--overwrite", "-w", str(ws)]) == 2
    assert sorted(p.name for p in (ws / "exports/taken").iterdir()) == ["latest", "v1", "v2"]


def test_an_export_made_before_versions_is_named_not_overwritten(trained, capsys):
    ws = trained
    old = ws / "exports/legacy"
    old.mkdir(parents=True)
    (old / "config.json").write_text("{}")
    assert main(["export", "latest:train", "--name", "legacy", "--allow-failed-eval", "-w", str(ws)]) == 2
    assert "made before exports were versioned; move it away" in capsys.readouterr().err
    assert sorted(p.name for p in old.iterdir()) == ["config.json"]


def test_a_merged_export_is_sharded_and_carries_its_template_and_stop_tokens(trained):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ws = trained
    args = ["export", "latest:train", "--name", "sharded", "--max-shard-size", "1MB", "--allow-failed-eval"]
    assert main([*args, "-w", str(ws)]) == 0
    out = ws / "exports/sharded/v1"
    assert len(list(out.glob("model-*-of-*.safetensors"))) > 1 and (out / "model.safetensors.index.json").is_file()
    model, tok = AutoModelForCausalLM.from_pretrained(out), AutoTokenizer.from_pretrained(out)
    eos = model.generation_config.eos_token_id
    assert tok.convert_tokens_to_ids("<|im_end|>") in (eos if isinstance(eos, list) else [eos])
    saved = json.loads((out / "tokenizer_config.json").read_text())
    assert saved["chat_template"] == (out / "chat_template.jinja").read_text() == tok.chat_template
    # plain transformers on the export renders tools, calls and results exactly as tunewright trains and serves
    tool = {"type": "function", "function": {"name": "check_freshness", "parameters": {"type": "object"}}}
    call = {"id": "c1", "type": "function", "function": {"name": "check_freshness", "arguments": {"table": "a.b"}}}
    conversation = [
        {"role": "user", "content": "Is a.b fresh?"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "content": '{"hours": 30}'},
    ]
    trained_tok = AutoTokenizer.from_pretrained(resolve_model(ws, "latest:train").adapter)
    exported = tok.apply_chat_template(conversation, tools=[tool], tokenize=False, add_generation_prompt=True)
    assert exported == chat.render(trained_tok, conversation, True, [tool]) and "<tool_call>" in exported
    plain = [{"role": "user", "content": "Is a.b fresh?"}]
    assert tok.apply_chat_template(plain, tokenize=False) == trained_tok.apply_chat_template(plain, tokenize=False)


def test_an_adapter_export_is_portable_and_checks_its_base(trained, capsys):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    ws = trained
    assert main(["eval", "-w", str(ws), *EVAL_FAST, "gates=[]"]) == 0
    old = os.umask(0o022)
    try:
        assert main(["export", "latest:train", "--format", "adapter", "--name", "ad", "-w", str(ws)]) == 0
    finally:
        os.umask(old)
    out = ws / "exports/ad/v1"
    assert json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"] == "models/tiny-base"
    for path in out.iterdir():
        assert oct(path.stat().st_mode & 0o777) == "0o644", path
        if path.suffix in (".json", ".md") and path.name != "manifest.json":  # the manifest records the command
            assert str(ws) not in path.read_text(), path
    readme = (out / "README.md").read_text()
    assert "Model Card for Model ID" not in readme and "LoRA r=16" in readme and "GO, every gate passed" in readme
    base = manifest(out)["results"]["base_model"]
    assert base["name_or_path"] == "models/tiny-base" and len(base["sha256"]) == 64

    source = resolve_model(ws, "exports/ad")  # the base is found by name and checked by hash
    assert source.base == str(ws / "models/tiny-base") and source.adapter == out
    plain = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(ws / "models/tiny-base"), str(out))
    assert plain.get_input_embeddings().weight.shape[0] == len(source.load()[1])
    trained_adapter = resolve_model(ws, "latest:train").adapter
    reference = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(ws / "models/tiny-base"), trained_adapter
    )
    ids = torch.tensor([source.load()[1]("The table finance.ledger is stale.")["input_ids"]])
    with torch.no_grad():
        assert torch.equal(plain(ids).logits, reference(ids).logits)
    assert main(["eval", "-w", str(ws), "--model", "exports/ad", *EVAL_FAST, "gates=[]"]) == 0  # a path as its name
    engine = Engine.from_source(source)
    assert engine.default_adapter == "exports-ad-v1" and engine.adapters == ["exports-ad-v1"]
    engine.shutdown()

    moved = ws.parent / "elsewhere"  # the export and its base, copied to another place, still load
    shutil.copytree(ws / "exports", moved / "exports", symlinks=True)
    shutil.copytree(ws / "models", moved / "models")
    assert resolve_model(moved, "exports/ad").base == str(moved / "models/tiny-base")
    (moved / "models/tiny-base/config.json").write_text("{}")
    with pytest.raises(UserError, match="whose files differ"):
        resolve_model(moved, "exports/ad")


def test_lineage_follows_what_each_run_consumed(trained):
    ws = trained
    base_id = runs(ws, "base")[0]["run_id"] if runs(ws, "base") else None
    for _ in range(2):
        assert main(["curate", "-w", str(ws)]) == 0  # identical splits again
    latest_curate = runs(ws, "curate")[-1]["run_id"]
    first_train = runs(ws, "train")[0]["run_id"]
    assert main(["train", "-w", str(ws), *SHORT, "training.max_steps=2"]) == 0
    second = runs(ws, "train")[-1]
    assert second["parents"] == [latest_curate, *([base_id] if base_id else [])]
    assert first_train not in second["parents"]
    consumed = {i["path"]: i.get("run") for i in second["inputs"]}
    assert consumed["data/splits/train.jsonl"] == latest_curate


def test_promote_is_gated_recorded_and_rolled_back(trained, capsys):
    ws = trained
    w = ["-w", str(ws)]
    for _ in range(2):
        assert main(["export", "latest:train", "--name", "prom", "--allow-failed-eval", *w]) == 0
    capsys.readouterr()
    assert main(["promote", "prom@v1", "--to", "production", *w]) == 1
    assert (
        "v1 has no evaluation against base: tunewright eval --model prom@v1 --baseline base" in capsys.readouterr().err
    )
    assert main(["eval", *w, "--model", "prom@v1", "--baseline", "base", *EVAL_FAST, "gates=[]"]) == 0
    assert main(["promote", "prom@v1", "--to", "production", "--reason", "first release", *w]) == 0
    assert resolve_model(ws, "prom@production").base == str(ws / "exports/prom/v1")

    capsys.readouterr()
    assert main(["promote", "prom", "--to", "production", *w]) == 1  # v2 was never compared with production
    assert "v2 has no evaluation against v1 (the current production)" in capsys.readouterr().err
    assert main(["eval", *w, "--model", "prom@v2", "--baseline", "prom@production", *EVAL_FAST, *GATE]) == 1
    capsys.readouterr()
    assert main(["promote", "prom", "--to", "production", *w]) == 1
    assert "against v1 (the current production) (eval-" in (err := capsys.readouterr().err) and "is NO-GO" in err
    assert main(["eval", *w, "--model", "prom@v2", "--baseline", "prom@production", *EVAL_FAST, "gates=[]"]) == 0
    assert main(["promote", "prom", "--to", "production", "--reason", "better", *w]) == 0
    assert resolve_model(ws, "prom@production").base == str(ws / "exports/prom/v2")

    assert main(["rollback", "prom", "--to", "production", "--reason", "pager went off", *w]) == 0
    assert resolve_model(ws, "prom@production").base == str(ws / "exports/prom/v1")
    capsys.readouterr()
    assert main(["rollback", "prom", "--to", "production", *w]) == 2
    assert "its first version; there is no earlier one" in capsys.readouterr().err

    from tunewright.core.registry import open_registry

    with open_registry(ws) as registry:
        moves = registry.alias_moves("prom", "production")
    assert [(m["from_version"], m["to_version"], m["kind"]) for m in moves] == [
        (None, 1, "promote"),
        (1, 2, "promote"),
        (2, 1, "rollback"),
    ]
    assert moves[-1]["reason"] == "pager went off" and moves[-1]["user"] and moves[-1]["at"]
    capsys.readouterr()
    assert main(["registry", "list", "prom", *w]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if "prom" in line]
    assert "production" in rows[0] and "production" not in rows[1]  # v1 holds it again
    assert export_name(Path("prom@production")) == "prom"  # the name `serve prom@production` answers to
    assert main(["promote", "prom@v9", "--to", "production", *w]) == 2
    assert main(["promote", "nothing", "--to", "production", *w]) == 2
    assert main(["promote", "prom", "--to", "prod", *w]) == 2


def test_promote_enforces_the_license_policy(trained, capsys):
    ws, w = trained, ["-w", str(trained)]
    assert main(["export", "latest:train", "--name", "lic", "--allow-failed-eval", *w]) == 0
    assert main(["eval", *w, "--model", "lic@v1", "--baseline", "base", *EVAL_FAST, "gates=[]"]) == 0
    policy = ws / "configs/policy.yaml"
    original = policy.read_text()
    try:
        policy.write_text("licenses: {allowed: [apache-2.0], forbidden: [CC-BY-4.0]}\nunlisted: forbidden\n")
        capsys.readouterr()
        assert main(["promote", "lic", "--to", "staging", "--license-reviewed", *w]) == 1
        err = capsys.readouterr().err
        assert "data source support_tickets: license CC-BY-4.0 is forbidden by the license policy" in err
        assert "base model" not in err  # the tiny base's README says apache-2.0, which is allowed
        policy.write_text("licenses: {allowed: [cc-by-4.0], needs_review: [apache-2.0]}\n")
        assert main(["promote", "lic", "--to", "staging", *w]) == 1
        assert "license Apache-2.0 needs review under the license policy" in capsys.readouterr().err
        assert main(["promote", "lic", "--to", "staging", "--license-reviewed", "--reason", "legal ok", *w]) == 0
    finally:
        policy.write_text(original)
    from tunewright.core.registry import open_registry

    with open_registry(ws) as registry:
        (move,) = registry.alias_moves("lic", "staging")
    assert move["reason"].startswith("legal ok [license review acknowledged: ") and "Apache-2.0" in move["reason"]


def test_an_export_with_a_wrong_chat_template_fails_parity_and_is_not_written(quickstart_copy, capsys, monkeypatch):
    import tunewright.export.stage as stage

    real_export = stage.export_model
    wrong = "{% for m in messages %}{{ m['content'] }}\n{% endfor %}{% if add_generation_prompt %}A:{% endif %}"

    def corrupted(source, fmt, out_dir, max_shard_size="5GB"):
        warnings = real_export(source, fmt, out_dir, max_shard_size)
        (out_dir / "chat_template.jinja").write_text(wrong)
        config = json.loads((out_dir / "tokenizer_config.json").read_text())
        config["chat_template"] = wrong
        (out_dir / "tokenizer_config.json").write_text(json.dumps(config))
        return warnings

    monkeypatch.setattr(stage, "export_model", corrupted)
    ws = quickstart_copy  # a model trained well enough to answer each prompt on its own terms
    runs_before = set((ws / "runs").iterdir())
    assert main(["export", "latest:train", "--name", "broken", "-w", str(ws)]) == 1
    err = capsys.readouterr().err
    assert "export diverges from the trained model on" in err and "golden prompts" in err
    assert not (ws / "exports/broken").exists()
    assert set((ws / "runs").iterdir()) == runs_before


def test_a_gguf_export_reads_back_with_its_tensors_tokenizer_and_template(trained, capsys):
    from gguf import GGUFReader
    from transformers import AutoTokenizer

    ws = trained
    assert (
        main(["export", "latest:train", "--format", "gguf", "--gguf-type", "q8_0", "--name", "g", "-w", str(ws)]) == 0
    )
    version = ws / "exports/g/v1"
    (path,) = version.glob("*.gguf")
    assert path.name == "g-q8_0.gguf"
    reader = GGUFReader(path)
    field = reader.get_field
    tokenizer = AutoTokenizer.from_pretrained(resolve_model(ws, "latest:train").adapter)
    assert field("general.architecture").contents() == "llama"
    tokens = field("tokenizer.ggml.tokens")
    assert [tokens.contents(i) for i in range(len(tokens.data))] == tokenizer.convert_ids_to_tokens(
        range(len(tokenizer))
    )
    assert field("tokenizer.chat_template").contents() == chat.portable_template(tokenizer)
    assert field("tokenizer.ggml.eot_token_id").contents() == tokenizer.convert_tokens_to_ids("<|im_end|>")
    kinds = {t.name: t.tensor_type.name for t in reader.tensors}
    assert kinds["token_embd.weight"] == "Q8_0" and kinds["blk.3.ffn_norm.weight"] == "F32"
    written = manifest(version)
    assert written["results"]["gguf_type"] == "q8_0" and written["results"]["parity_passed"]
    assert any(o["path"].endswith("g-q8_0.gguf") and o.get("sha256") for o in written["outputs"])
    parity = json.loads((version / "parity.json").read_text())  # rounding may move a near-tied greedy answer
    assert parity["min_top1_agreement"] == 0.95 and parity["top1_agreement"] >= 0.95
    assert "llama-server -m exports/g/v1/g-q8_0.gguf" in (version / "README.md").read_text()
    capsys.readouterr()
    assert main(["serve", "g@latest", "-w", str(ws)]) == 2
    assert "is a GGUF export (g-q8_0.gguf): run it with llama.cpp" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--format", "gguf", "--gguf-type", "q4_k"], "--gguf-type 'q4_k': expected one of f16, q8_0"),
        (["--format", "onnx"], "--format 'onnx': expected one of merged, adapter, gguf"),
        (["--format", "merged", "--verify-with", "llama.cpp"], "--verify-with llama.cpp checks gguf exports"),
        (["--format", "gguf", "--verify-with", "vllm"], "--verify-with vllm checks merged/adapter exports"),
        (["--verify-with", "tgi"], "--verify-with 'tgi': expected one of vllm, llama.cpp"),
    ],
)
def test_an_export_option_that_cannot_work_is_refused_before_any_work(trained, capsys, args, message):
    ws = trained
    runs_before = set((ws / "runs").iterdir())
    assert main(["export", "latest:train", "--name", "refused", *args, "-w", str(ws)]) == 2
    assert message in capsys.readouterr().err
    assert not (ws / "exports/refused").exists()
    assert set((ws / "runs").iterdir()) == runs_before


def test_a_missing_base_or_an_adapter_export_of_a_full_fine_tune_is_a_clear_error(trained, capsys):
    ws, w = trained, ["-w", str(trained)]
    base = ws / "models/tiny-base"
    base.rename(ws / "models/moved-away")
    try:
        assert main(["export", "latest:train", "--name", "nobase", *w]) == 2
        assert "models/tiny-base" in capsys.readouterr().err
    finally:
        (ws / "models/moved-away").rename(base)
    assert not (ws / "exports/nobase").exists()
    assert main(["train", *w, "adapter=none", "training.max_steps=2", "checkpoint.every=null"]) == 0
    capsys.readouterr()
    assert main(["export", "latest:train", "--format", "adapter", "--name", "noadapter", *w]) == 2
    assert "is a full fine-tune with no adapter; export it with --format merged" in capsys.readouterr().err
    assert not (ws / "exports/noadapter").exists()
