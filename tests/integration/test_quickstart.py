"""The whole loop through the real CLI: quickstart, then eval of the base, then serve."""

import json
import re
import sys
import time
from pathlib import Path
from typing import Literal

import jsonschema
import openai
import pytest
from pydantic import BaseModel

from tunewright.cli.main import main
from tunewright.demo import domain
from tunewright.runtimes.net import free_port

CLI = [sys.executable, "-m", "tunewright"]


@pytest.fixture
def quickstart(quickstart_run):
    return quickstart_run


def manifests(ws: Path) -> dict[str, dict]:
    out = {}
    for p in (ws / "runs").glob("*/manifest.json"):
        m = json.loads(p.read_text())
        out[m["run_id"]] = m
    return out


def by_stage(ms: dict[str, dict], stage: str) -> dict:
    (m,) = [m for m in ms.values() if m["stage"] == stage]
    return m


def test_artifacts_and_summary(quickstart):
    ws, stdout = quickstart
    for rel in (
        "reports/data-card.md",
        "reports/eval-report.md",
        "exports/support-assistant/latest/model.safetensors",
        "exports/support-assistant/latest/tokenizer.json",
        "exports/support-assistant/latest/chat_template.jinja",
        "exports/support-assistant/latest/generation_config.json",
        "exports/support-assistant/latest/manifest.json",
    ):
        assert (ws / rel).is_file(), rel
    assert "data card:" in stdout and "eval report:" in stdout and "export:" in stdout
    assert "First step:" in stdout.splitlines()[-4] or "First step:" in stdout


def test_the_merged_export_stops_where_the_template_ends_a_turn(quickstart):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ws, _ = quickstart
    out = ws / "exports/support-assistant/latest"
    model, tok = AutoModelForCausalLM.from_pretrained(out), AutoTokenizer.from_pretrained(out)
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    eos = model.generation_config.eos_token_id
    assert im_end in (eos if isinstance(eos, list) else [eos])
    messages = [{"role": "user", "content": "The nightly job for hr.payroll failed. What should I do?"}]
    prompt = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    generated = model.generate(**prompt, max_new_tokens=120, do_sample=False)[0, prompt["input_ids"].shape[1] :]
    assert generated[-1].item() == im_end and len(generated) < 120  # plain generate stops with the template
    assert tok.decode(generated, skip_special_tokens=True).startswith("First step:")


def test_manifests_chain_export_train_curate(quickstart):
    ws, _ = quickstart
    ms = manifests(ws)
    export, train, curate = by_stage(ms, "export"), by_stage(ms, "train"), by_stage(ms, "curate")
    assert train["run_id"] in export["parents"]
    assert curate["run_id"] in train["parents"]
    assert by_stage(ms, "base")["run_id"] in train["parents"]
    assert export["results"]["parity_passed"] is True
    assert json.loads((ws / "exports/support-assistant/latest/manifest.json").read_text())["run_id"] == export["run_id"]
    split_hashes = {o["sha256"] for o in curate["outputs"] if o["path"].startswith("data/splits/")}
    assert {i["sha256"] for i in train["inputs"] if i["path"].startswith("data/splits/")} <= split_hashes
    adapter = {o["sha256"] for o in train["outputs"] if "/adapter/" in o["path"]}
    assert adapter & {i["sha256"] for i in export["inputs"]}
    for m in ms.values():
        assert m["versions"]["torch"] and m["versions"]["transformers"]
        assert m["finished_at"] >= m["started_at"]


def test_the_registry_lists_the_export_version_and_its_verdict(quickstart, capsys):
    ws, _ = quickstart
    assert (ws / "registry.db").is_file()  # written as each run completed
    assert main(["registry", "list", "-w", str(ws)]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if "support-assistant" in line)
    assert "v1" in row and "production" in row and "merged" in row and "GO" in row and "passed" in row


def test_runs_lineage_explains_the_export(quickstart, capsys):
    ws, _ = quickstart
    assert main(["runs", "lineage", "latest:export", "-w", str(ws)]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if not line.lstrip().startswith("- ")]
    assert [line.split()[0] for line in lines[:3]] == ["export", "train", "curate"]
    assert lines[1].startswith("  train") and lines[2].startswith("    curate")


def test_every_raw_line_is_accounted_for(quickstart):
    ws, _ = quickstart
    chats = ("support_tickets", "runbook_chats", "ops_tool_calls", "alert_extractions")
    raw = sum(len((ws / "data/raw" / f"{f}.jsonl").read_bytes().splitlines()) for f in chats)
    kept = sum(
        len((ws / "data/splits" / f"{s}.jsonl").read_text().splitlines()) for s in ("train", "validation", "test")
    )
    entries = [
        json.loads(line) for p in (ws / "data/quarantine").glob("*.jsonl") for line in p.read_text().splitlines()
    ]
    quarantined = sum(e["action"] == "removed" for e in entries)
    assert kept + quarantined == raw
    assert quarantined > 0


def test_the_tuned_model_is_a_go_against_its_base(quickstart):
    ws, _ = quickstart
    ev = by_stage(manifests(ws), "eval")
    assert ev["results"]["verdict"] == "GO" and ev["results"]["baseline"] == "base"
    assert {g["status"] for g in ev["results"]["gates"] if g["tier"] != "advisory"} == {"PASS"}
    summary = json.loads((ws / "runs" / ev["run_id"] / "eval.json").read_text())
    support = {m["name"]: m for t in summary["tasks"] if t["name"] == "support" for m in t["metrics"]}
    assert support["format_rate"]["model"]["value"] >= 0.9 > support["format_rate"]["baseline"]["value"]
    assert support["field_accuracy"]["difference"]["low"] > 0.5
    report = (ws / "reports/eval-report.md").read_text()
    assert "**Verdict: GO**" in report and ev["results"]["config_hash"] in report
    status = {g["metric"]: g["status"] for g in ev["results"]["gates"]}
    assert status["tools.tool_name_accuracy"] == status["tools.tool_args_f1"] == "PASS"
    assert status["extraction.json_valid"] == status["extraction.json_field_accuracy"] == "PASS"


def test_the_quickstart_serves_a_tool_call_and_a_schema_bound_object(quickstart):
    ws, stdout = quickstart
    tail = stdout[stdout.index("served at") :]
    assert re.search(r'\nopen_incident\(\{"table": "[a-z]+\.[a-z_]+", "kind": "failed", ', tail)
    extracted = tail.split("(response_format: json_schema)\n", 1)[1].splitlines()[0]
    jsonschema.validate(json.loads(extracted), domain.EXTRACTION_SCHEMA)
    parity = json.loads((ws / "exports/support-assistant/latest/parity.json").read_text())
    assert parity["answers"]["calls"] >= 2 and parity["answers"]["json"] >= 2 and not parity["diverged"]


def serve_export(ws: Path, launch, *overrides: str) -> openai.OpenAI:
    """`tunewright serve exports/support-assistant` in a subprocess, and an openai client for it."""
    port = free_port()
    launch(
        [*CLI, "serve", "exports/support-assistant", "-w", str(ws), "--port", str(port), *overrides],
        f"http://127.0.0.1:{port}/v1/health/ready",
    )
    return openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0)


def test_served_export_answers_through_openai(quickstart, launch):
    ws, _ = quickstart
    client = serve_export(ws, launch)
    assert [m.id for m in client.models.list().data] == ["support-assistant"]
    resp = client.chat.completions.create(
        model="support-assistant",
        messages=[{"role": "user", "content": "There are duplicate rows in hr.payroll. What should I do?"}],
        temperature=0,
    )
    answer = resp.choices[0].message.content
    assert re.fullmatch(r"First step: [^\n]+\nThen: [^\n]+\nEscalate: [^\n]+ is governed, so yes; [^\n]+", answer)
    assert resp.choices[0].finish_reason == "stop"


class Extraction(BaseModel):
    table: str
    kind: Literal["stale", "schema", "failed", "rowcount", "access", "duplicates"]
    escalate: bool


def test_the_served_export_keeps_to_schemas_and_tools_when_sampling(quickstart, launch):
    """The acceptance run: 200 sampled answers under a json_schema all parse and validate (or stop at
    max_tokens, saying so); `required` always calls a declared tool with valid arguments; streamed calls
    reassemble to the whole answer; the openai client's `parse` works."""
    ws, _ = quickstart
    client = serve_export(ws, launch)
    alerts = [p for _, _, p in domain.extraction_cases()]
    fmt = {
        "type": "json_schema",
        "json_schema": {"name": "incident", "schema": domain.EXTRACTION_SCHEMA, "strict": True},
    }
    finishes = []
    for alert in alerts[:25]:
        resp = client.chat.completions.create(
            model="support-assistant",
            messages=[{"role": "user", "content": alert}],
            response_format=fmt,
            temperature=1.0,
            n=8,
            max_tokens=60,
        )
        for choice in resp.choices:
            finishes.append(choice.finish_reason)
            if choice.finish_reason == "stop":
                jsonschema.validate(json.loads(choice.message.content), domain.EXTRACTION_SCHEMA)
            else:
                assert choice.finish_reason == "length"
    assert len(finishes) == 200 and finishes.count("stop") >= 100
    parsed = client.chat.completions.parse(
        model="support-assistant",
        messages=[{"role": "user", "content": alerts[0]}],
        response_format=Extraction,
        temperature=0,
    )
    assert isinstance(parsed.choices[0].message.parsed, Extraction)
    schemas = {t["function"]["name"]: t["function"]["parameters"] for t in domain.TOOLS}
    ask = {"role": "user", "content": "Open an incident for the stale data on `finance.ledger`."}
    resp = client.chat.completions.create(
        model="support-assistant",
        messages=[ask],
        tools=domain.TOOLS,
        tool_choice="required",
        temperature=1.0,
        n=16,
        max_tokens=160,
    )
    called = [c for c in resp.choices if c.finish_reason != "length"]  # a call cut by max_tokens says so
    assert len(called) >= 12
    for choice in called:
        assert choice.finish_reason == "tool_calls" and choice.message.tool_calls, choice
        for call in choice.message.tool_calls:
            jsonschema.validate(json.loads(call.function.arguments), schemas[call.function.name])
    greedy = {"model": "support-assistant", "messages": [ask], "tools": domain.TOOLS, "temperature": 0}
    whole = client.chat.completions.create(**greedy).choices[0]
    assert whole.finish_reason == "tool_calls" and whole.message.tool_calls[0].function.name == "open_incident"
    names, arguments = {}, {}
    for chunk in client.chat.completions.create(**greedy, stream=True):
        for delta in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            names[delta.index] = names.get(delta.index, "") + (delta.function.name or "")
            arguments[delta.index] = arguments.get(delta.index, "") + (delta.function.arguments or "")
    assert [(names[i], json.loads(arguments[i])) for i in sorted(names)] == [
        (c.function.name, json.loads(c.function.arguments)) for c in whole.message.tool_calls
    ]


def test_the_export_serves_in_bfloat16_when_asked(quickstart, launch, tmp_path):
    ws, _ = quickstart
    port = free_port()
    launch(
        [*CLI, "serve", "exports/support-assistant", "-w", str(ws), "--port", str(port), "dtype=bfloat16"],
        f"http://127.0.0.1:{port}/v1/health/ready",
    )
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0)
    resp = client.chat.completions.create(
        model="support-assistant",
        messages=[{"role": "user", "content": "There are duplicate rows in hr.payroll. What should I do?"}],
        temperature=0,
        logprobs=True,
    )
    assert resp.choices[0].message.content.startswith("First step: ")
    assert all(t.logprob <= 0 for t in resp.choices[0].logprobs.content)
    assert "serving support-assistant (bfloat16, " in (tmp_path / "server-0.log").read_text()


def test_the_quickstart_captures_its_requests_takes_feedback_and_reports(quickstart):
    from tunewright.core import capture_store as store

    ws, stdout = quickstart
    assert "feedback on the first: 200" in stdout and "monitor:" in stdout
    rows = list(store.read_requests(store.connect(ws / "monitor/capture.sqlite", readonly=True)))
    assert len(rows) == 3 and {r["version"] for r in rows} == {"exports/support-assistant/v1"}
    assert [f["score"] for f in rows[0]["feedback"]] == [1.0]
    calls = rows[1]["response"]["choices"][0]["tool_calls"]
    assert calls[0]["function"]["name"] == "open_incident" and rows[1]["request"]["tools"] == domain.TOOLS
    ms = manifests(ws)
    capture, monitor = by_stage(ms, "capture"), by_stage(ms, "monitor")
    assert capture["parents"] == [by_stage(ms, "export")["run_id"]]
    assert monitor["parents"] == [capture["run_id"]] and capture["results"]["stored"] == 3
    report = (ws / "reports/monitor-report.md").read_text()
    assert "## support-assistant — exports/support-assistant/v1" in report and "No breaches." in report
    row = next(line for line in report.splitlines() if line.startswith("| 20"))
    assert row.split(" | ")[9:11] == ["100.0%", "100.0%"]  # the JSON answer and the tool call are valid
    assert "<svg" in (ws / "reports/monitor-report.html").read_text()


def test_monitor_check_flags_a_new_topic_and_fails(quickstart_copy, launch, capsys):
    import random

    import yaml

    from tunewright.core import capture_store as store

    ws = quickstart_copy
    store_path = ws / "monitor/capture.sqlite"
    store_path.unlink()  # only this test's traffic
    port = free_port()
    launch(
        [*CLI, "serve", "support-assistant@production", "-w", str(ws), "--port", str(port), "capture.enabled=true"],
        f"http://127.0.0.1:{port}/v1/health/ready",
    )
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0)
    trained = [json.loads(line) for line in (ws / "data/splits/train.jsonl").read_text().splitlines()]
    rng = random.Random(0)  # the training distribution (the test split is grouped by table: a drift of its own)
    prompts = [
        next(m["content"] for m in reversed(t["messages"]) if m["role"] == "user") for t in rng.sample(trained, 42)
    ]
    prompts += domain.off_topic_questions(rng, 18)  # 30% from a topic the training data lacks
    for prompt in prompts:
        client.chat.completions.create(
            model="support-assistant", messages=[{"role": "user", "content": prompt}], max_tokens=48, temperature=0
        )
    deadline = time.monotonic() + 30  # the capture writer stores rows in batches, twice a second
    while len(list(store.read_requests(store.connect(store_path, readonly=True)))) < 60:
        assert time.monotonic() < deadline, "the server did not store every captured request"
        time.sleep(0.2)
    assert main(["monitor", "-w", str(ws), "check"]) == 1
    out = capsys.readouterr().out
    assert "BREACH" in out and "input_drift_p_value" in out
    assert len(list(store.read_requests(store.connect(store_path, readonly=True)))) == 60
    report = (ws / "reports/monitor-report.md").read_text()
    grew = [line for line in report.splitlines() if "a cluster grew" in line]  # the top 3 that grew, with examples
    assert any(word in line for line in grew for word in ("vacation", "expense", "parental", "laptop", "discount"))
    rules = yaml.safe_load((ws / "reports/monitor-alerts.yml").read_text())["groups"][0]["rules"]
    assert {r["alert"] for r in rules} >= {"TunewrightErrorRate", "TunewrightSlowRequests", "TunewrightCaptureOff"}
