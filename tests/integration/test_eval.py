"""`tunewright eval` end to end on the quickstart's tuned model: gates decided from intervals,
endpoints (our own server in a subprocess), an LLM judge over real HTTP, an lm-eval task,
blind review, the HTML report in headless Chromium, and the bad inputs."""

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tunewright.cli.main import main
from tunewright.core.model_source import ModelSource
from tunewright.runtimes.net import free_port

CLI = [sys.executable, "-m", "tunewright"]
GOLDEN = ["tasks=[{name: golden, data: data/raw/eval/golden.jsonl, scorers: [{type: token_f1}]}]", "gates=[]"]


def newest(ws: Path, stage: str) -> Path:
    found = sorted(
        (ws / "runs").glob(f"{stage}-*"), key=lambda p: json.loads((p / "manifest.json").read_text())["started_at"]
    )
    return found[-1]


def results(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "results.jsonl").read_text().splitlines()]


@pytest.fixture
def served(quickstart_copy, launch):
    """The quickstart's export served by `tunewright serve` in a subprocess."""
    ws, port = quickstart_copy, free_port()
    launch(
        [*CLI, "serve", "exports/support-assistant", "-w", str(ws), "--port", str(port)],
        f"http://127.0.0.1:{port}/v1/health/ready",
    )
    return ws, f"http://127.0.0.1:{port}/v1"


def test_one_gate_passes_one_fails_and_the_verdict_is_no_go(quickstart_copy, capsys):
    ws = quickstart_copy
    gates = (
        "gates=[{metric: support.format_rate, min_gain: 0.5},"
        " {metric: support.pass_rate, min_gain: 0.2}, {metric: support.nll, max_drop: 0.0, tier: advisory}]"
    )
    code = main(["eval", "-w", str(ws), "--baseline", "base", "generation.max_new_tokens=48", gates])
    out, err = capsys.readouterr()
    assert code == 1
    assert "PASS" in out and "support.format_rate" in out and "verdict NO-GO" in out
    assert "support.pass_rate (FAIL)" in err
    run = newest(ws, "eval")
    summary = json.loads((run / "eval.json").read_text())
    status = {g["metric"]: g["status"] for g in summary["gates"]}
    assert status == {"support.format_rate": "PASS", "support.pass_rate": "FAIL", "support.nll": "PASS"}
    rows = results(run)
    assert {r["role"] for r in rows} == {"model", "baseline"}
    support = [r for r in rows if r["task"] == "support"]
    assert {"format_rate", "rouge2", "nll", "pass_rate"} <= set(support[-1]["scores"])
    report = (ws / "reports/eval-report.md").read_text()
    assert "**Verdict: NO-GO**" in report and summary["config_hash"] in report
    assert "## Lineage" in report and "curate `curate-" in report


def test_the_tool_and_extraction_gates_fail_on_the_base_model(quickstart_copy, capsys):
    """The gates the tuned model passes in the quickstart (tools, extraction) fail for its base."""
    ws = quickstart_copy
    assert main(["eval", "-w", str(ws), "--model", "models/tiny-base", "--baseline", "base"]) == 1
    status = {g["metric"]: g["status"] for g in json.loads((newest(ws, "eval") / "eval.json").read_text())["gates"]}
    for metric in ("tools.tool_name_accuracy", "tools.tool_args_f1", "extraction.json_field_accuracy"):
        assert status[metric] == "FAIL", (metric, status)


def test_a_gate_on_an_unknown_metric_stops_before_any_generation(quickstart_copy, capsys, monkeypatch):
    ws = quickstart_copy
    before = set((ws / "runs").iterdir())

    def no_loading(self):
        raise AssertionError("a model was loaded before the gates were checked")

    monkeypatch.setattr(ModelSource, "load_base", no_loading)
    code = main(["eval", "-w", str(ws), "--baseline", "base", "gates=[{metric: support.rouge3, threshold: 0.1}]"])
    err = capsys.readouterr().err
    assert code == 2 and "gate support.rouge3: task 'support' computes no metric 'rouge3'" in err
    assert "rouge2" in err  # the metrics it does compute are listed, digits and all
    assert main(["eval", "-w", str(ws), "gates=[{metric: support.rouge2, max_drop: 0.01}]"]) == 2
    assert "pass --baseline" in capsys.readouterr().err
    assert set((ws / "runs").iterdir()) == before


def test_an_eval_file_with_a_missing_field_is_named_with_its_line(quickstart_copy, capsys):
    ws = quickstart_copy
    bad = ws / "data/raw/eval/bad.jsonl"
    bad.write_text('{"prompt": "fine?", "reference": "yes"}\n{"prompt": "where is the reference?"}\n')
    code = main(["eval", "-w", str(ws), "tasks=[{name: t, data: data/raw/eval/bad.jsonl, scorers: [{type: rouge}]}]"])
    assert code == 2
    assert f"{bad}:2: scorer 'rouge' needs a reference answer" in capsys.readouterr().err


def test_an_endpoint_gives_the_same_answers_as_the_local_model(served, capsys):
    ws, url = served
    assert main(["eval", "-w", str(ws), "--model", "exports/support-assistant", *GOLDEN]) == 0
    local = {r["id"]: r["answer"] for r in results(newest(ws, "eval"))}
    args = ["eval", "-w", str(ws), "--endpoint", url, "--endpoint-model", "support-assistant", *GOLDEN]
    assert main([*args, "endpoint.concurrency=4"]) == 0
    remote_run = newest(ws, "eval")
    remote = {r["id"]: r["answer"] for r in results(remote_run)}
    assert remote == local and len(remote) == 20  # tool and extraction cases among them
    models = json.loads((remote_run / "eval.json").read_text())["models"]
    assert models["model"] == {"kind": "endpoint", "label": f"support-assistant@{url}", "url": url,
                               "model": "support-assistant", "lineage": []}  # fmt: skip
    capsys.readouterr()
    assert main([*args[:-4], "--endpoint-model", "nope", *GOLDEN]) == 2
    assert "does not serve 'nope'; it serves: support-assistant" in capsys.readouterr().err


def test_an_unreachable_endpoint_fails_clearly_after_the_retries(quickstart_copy, capsys):
    ws = quickstart_copy
    dead = f"http://127.0.0.1:{free_port()}/v1"
    args = ["eval", "-w", str(ws), "--endpoint", dead, "--endpoint-model", "m", *GOLDEN, "endpoint.retries=1"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"endpoint {dead} is not usable" in err and "failed after 2 attempt(s): ConnectError" in err
    assert len(list((ws / "runs").glob("eval-*"))) == 1  # the quickstart's own, nothing new


def test_an_llm_judge_served_by_our_own_server(served):
    ws, url = served
    judge = f"{{type: judge, endpoint: '{url}', model: support-assistant}}"
    constrained = f"{{type: judge, endpoint: '{url}', model: support-assistant, constrain: true}}"
    tasks = (
        f"tasks=[{{name: free, data: data/raw/eval/golden.jsonl, sources: [runbook_chats], scorers: [{judge}]}},"
        f" {{name: verdicts, data: data/raw/eval/golden.jsonl, sources: [runbook_chats], scorers: [{constrained}]}}]"
    )
    gates = "gates=[{metric: verdicts.judge_valid_rate, threshold: 1.0}]"
    assert main(["eval", "-w", str(ws), "--model", "exports/support-assistant", tasks, gates]) == 0
    run = newest(ws, "eval")
    summary = json.loads((run / "eval.json").read_text())
    rows = results(run)
    # the tiny model never writes "Score: N" by itself: every free reply is junk, counted, never guessed
    assert summary["judges"]["free"] == {"replies": 12, "junk": 12}
    assert all(r["scores"]["judge_score"] is None for r in rows if r["task"] == "free")
    # asked to answer with a verdict only, it always gives one: real 1-5 scores from the model
    assert summary["judges"]["verdicts"] == {"replies": 12, "junk": 0}
    scores = [r["scores"]["judge_score"] for r in rows if r["task"] == "verdicts"]
    assert all(s in (1.0, 2.0, 3.0, 4.0, 5.0) for s in scores)
    assert len(list((ws / "cache/judge").glob("*.json"))) == 24
    assert main(["eval", "-w", str(ws), "--model", "exports/support-assistant", tasks, gates]) == 0
    again = [r["scores"]["judge_score"] for r in results(newest(ws, "eval")) if r["task"] == "verdicts"]
    assert again == scores and len(list((ws / "cache/judge").glob("*.json"))) == 24  # from the cache


def test_a_pairwise_judge_asks_both_orders(served, capsys):
    ws, url = served
    judge = f"{{type: judge, endpoint: '{url}', model: support-assistant, mode: pairwise, constrain: true}}"
    task = f"tasks=[{{name: duel, data: data/raw/eval/golden.jsonl, sources: [runbook_chats], scorers: [{judge}]}}]"
    relative = "gates=[{metric: duel.judge_win_rate, min_gain: 0.1}]"
    assert main(["eval", "-w", str(ws), "--baseline", "base", task, relative]) == 2
    assert "already model vs baseline" in capsys.readouterr().err
    gates = "gates=[{metric: duel.judge_win_rate, threshold: 0.0, tier: advisory}]"
    assert main(["eval", "-w", str(ws), "--model", "exports/support-assistant", "--baseline", "base", task, gates]) == 0
    run = newest(ws, "eval")
    summary = json.loads((run / "eval.json").read_text())
    assert summary["judges"]["duel"] == {"replies": 24, "junk": 0}  # 12 items, asked in both orders
    wins = [r["scores"]["judge_win_rate"] for r in results(run) if r["role"] == "model"]
    assert len(wins) == 12 and all(w in (0.0, 0.25, 0.5, 0.75, 1.0) for w in wins)


DOCS = [
    ("The table finance.ledger is stale. What is the first step?", ["check the freshness monitor", "drop it"], 0),
    ("There are duplicate rows in sandbox.events. What is the first step?", ["reboot", "check the merge keys"], 1),
    ("Writes to hr.payroll are rejected for lack of privileges. First step?", ["verify the grants", "wait"], 0),
]


def harness_tasks(ws: Path) -> Path:
    """Two lm-eval task YAMLs over a local JSONL: multiple choice (log-likelihoods) and generation."""
    tasks = ws / "evals"
    tasks.mkdir()
    (tasks / "mc.jsonl").write_text("".join(json.dumps({"q": q, "choices": c, "answer": a}) + "\n" for q, c, a in DOCS))
    data = f"dataset_path: json\ndataset_kwargs: {{data_files: {{test: '{tasks / 'mc.jsonl'}'}}}}\ntest_split: test\n"
    (tasks / "tw_mc.yaml").write_text(
        f"task: tw_mc\n{data}output_type: multiple_choice\n"
        'doc_to_text: "Question: {{q}}\\nAnswer:"\ndoc_to_choice: "{{choices}}"\ndoc_to_target: "{{answer}}"\n'
        "metric_list:\n  - {metric: acc, aggregation: mean, higher_is_better: true}\n"
    )
    (tasks / "tw_gen.yaml").write_text(
        f"task: tw_gen\n{data}output_type: generate_until\n"
        'doc_to_text: "{{q}}"\ndoc_to_target: "First step"\n'
        "generation_kwargs: {until: ['\\n'], max_gen_toks: 12}\n"
        "metric_list:\n  - {metric: exact_match, aggregation: mean, higher_is_better: true}\n"
    )
    return tasks


def test_an_lm_eval_task_over_a_local_jsonl(quickstart_copy):
    ws = quickstart_copy
    harness_tasks(ws)
    task = "tasks=[{name: mc, kind: lm_eval, task: tw_mc, include_path: evals}]"
    assert main(["eval", "-w", str(ws), "--baseline", "base", task, "gates=[{metric: mc.acc, max_drop: 1.0}]"]) == 0
    run = newest(ws, "eval")
    rows = results(run)
    assert len(rows) == 6 and {r["role"] for r in rows} == {"model", "baseline"}
    assert all(r["scores"]["acc"] in (0.0, 1.0) for r in rows)
    model_rows = [r for r in rows if r["role"] == "model"]
    choices = {c for _, cs, _ in DOCS for c in cs}
    assert all(r["answer"] in choices for r in model_rows)
    summary = json.loads((run / "eval.json").read_text())
    acc = summary["tasks"][0]["metrics"][0]
    assert acc["name"] == "acc" and acc["model"]["value"] == sum(r["scores"]["acc"] for r in model_rows) / 3


def test_lm_eval_tasks_against_an_endpoint(served, capsys):
    ws, url = served
    harness_tasks(ws)
    endpoint = ["--endpoint", url, "--endpoint-model", "support-assistant"]
    mc = "{name: mc, kind: lm_eval, task: tw_mc, include_path: evals}"
    assert main(["eval", "-w", str(ws), *endpoint, f"tasks=[{mc}]", "gates=[]"]) == 2
    assert "need the served model's tokenizer" in capsys.readouterr().err
    mc = mc.replace("}", ", tokenizer: exports/support-assistant}")
    gen = "{name: gen, kind: lm_eval, task: tw_gen, include_path: evals}"
    assert main(["eval", "-w", str(ws), *endpoint, f"tasks=[{mc}, {gen}]", "gates=[]"]) == 0
    remote = results(newest(ws, "eval"))
    assert main(["eval", "-w", str(ws), "--model", "exports/support-assistant", f"tasks=[{mc}]", "gates=[]"]) == 0
    local = results(newest(ws, "eval"))
    assert [r["answer"] for r in remote if r["task"] == "mc"] == [r["answer"] for r in local]  # same choices
    generated = [r for r in remote if r["task"] == "gen"]
    assert len(generated) == 3 and generated[0]["prompt"][-1] == {"role": "user", "content": DOCS[0][0]}
    assert all(r["scores"]["exact_match"] in (0.0, 1.0) for r in generated)


def test_blind_review_round_trip(quickstart_copy, capsys):
    ws = quickstart_copy
    assert main(["eval", "export-review", "latest:eval", "-w", str(ws)]) == 0
    eval_id = newest(ws, "eval").name
    review = ws / "reviews" / eval_id / "review.csv"
    rows = list(csv.DictReader(review.open(encoding="utf-8")))
    items = sum(t["items"] for t in json.loads((newest(ws, "eval") / "eval.json").read_text())["tasks"])
    assert len(rows) == items == 110 and set(rows[0]) >= {"pair_id", "answer_a", "answer_b", "preferred"}
    assert "model" not in review.read_text().lower().split(",")  # unlabelled
    key = json.loads((newest(ws, "review") / "key.json").read_text())["pairs"]
    assert {k["model_is"] for k in key.values()} == {"A", "B"}  # sides are shuffled
    by_id = {r["pair_id"]: r for r in rows}
    for pid, r in by_id.items():  # the reviewer always prefers the tuned model's answer, except one tie
        r["preferred"] = key[pid]["model_is"]
    by_id["p0001"]["preferred"] = "tie"
    judged = ws / "judged.csv"
    with judged.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, rows[0].keys())
        w.writeheader()
        w.writerows(by_id.values())
    capsys.readouterr()
    assert main(["eval", "import-review", "latest:eval", str(judged), "-w", str(ws)]) == 0
    prefs = [json.loads(line) for line in (ws / f"data/preferences/review-{eval_id}.jsonl").read_text().splitlines()]
    assert len(prefs) == items - 1 and all(p["meta"]["preferred"] == "model" for p in prefs)
    assert prefs[0]["prompt"][-1]["role"] == "user" and prefs[0]["chosen"][0]["role"] == "assistant"
    report = (ws / "reports/eval-report.md").read_text()
    assert f"{items} pairs judged by reviewers (1 ties, 0 left blank)" in report
    assert f"Model win rate **{(items - 0.5) / items:.3f}" in report
    by_id["p0002"]["preferred"] = "C"
    with judged.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, rows[0].keys())
        w.writeheader()
        w.writerows(by_id.values())
    assert main(["eval", "import-review", "latest:eval", str(judged), "-w", str(ws)]) == 2
    assert f"{judged}:" in capsys.readouterr().err


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed")
def test_the_html_report_renders_in_headless_chromium(quickstart_run, tmp_path):
    ws, _ = quickstart_run
    html = ws / "reports/eval-report.html"
    assert "http://" not in html.read_text().replace('xmlns="http://www.w3.org/2000/svg"', "")  # self-contained
    shot = tmp_path / "report.png"
    base = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1200,2400"]
    subprocess.run([*base, f"--screenshot={shot}", html.as_uri()], check=True, capture_output=True, timeout=120)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    dom = subprocess.run([*base, "--dump-dom", html.as_uri()], check=True, capture_output=True, text=True, timeout=120)
    assert '<div id="gates"><table>' in dom.stdout and "support.format_rate" in dom.stdout
    assert dom.stdout.count("<svg") >= 2 and ">GO</span>" in dom.stdout
