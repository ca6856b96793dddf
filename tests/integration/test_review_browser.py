"""`tunewright review serve`: the blind review page in headless Chromium, judged by keyboard, resumed after a reload,
several reviewers; `review export` puts win rates and agreement into the eval report and writes preference pairs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import httpx
import pytest
from browser import chromium_page, judge, needs_chromium, screenshot, start_reviewing

from tunewright.cli.main import main
from tunewright.runtimes.net import free_port

pytestmark = needs_chromium


def _review_server(launch, ws: Path, run: str, *extra: str, token: str = "") -> str:
    port = free_port("127.0.0.1")
    cmd = [sys.executable, "-m", "tunewright", "review", "serve", run, "-w", str(ws), "-p", str(port), *extra]
    query = f"?token={token}" if token else ""
    launch(cmd, f"http://127.0.0.1:{port}/api/pairs{query}", timeout=60)
    return f"http://127.0.0.1:{port}/"


def _eval_id(ws: Path) -> str:
    found = [json.loads(m.read_text()) for m in (ws / "runs").glob("eval-*/manifest.json")]
    return max(found, key=lambda m: m["started_at"])["run_id"]


def test_two_reviewers_judge_by_keyboard_resume_after_a_reload_and_export(quickstart_copy, launch, tmp_path, capsys):
    ws = quickstart_copy
    run = _eval_id(ws)
    url = _review_server(launch, ws, run)
    pairs = httpx.get(f"{url}api/pairs").json()["pairs"]
    assert len(pairs) >= 6 and all(
        set(p) == {"pair_id", "question", "reference", "answer_a", "answer_b"} for p in pairs
    )

    with chromium_page() as page:
        start_reviewing(page, url, "ana")
        screenshot(page, "review-page.png", tmp_path)
        assert page.inner_text("#progress") == f"0 / {len(pairs)} judged"
        text = page.inner_text("body")
        assert "support-assistant" not in text and "tiny-base" not in text and "train-" not in text  # blind
        ana = [judge(page, "1"), judge(page, "2"), judge(page, "3")]
        fourth = judge(page, "4", comment="both miss the owner", correction="First step: page the table owner.")
        ana.append(fourth)
        assert ana == [p["pair_id"] for p in pairs[:4]]

        page.reload()  # the reviewer's name is remembered, and the review resumes at the first pair not judged
        page.wait_for_selector("#review:not(.hidden)")
        assert page.inner_text("#progress") == f"4 / {len(pairs)} judged"
        assert pairs[4]["pair_id"] in page.text_content("#pair")
        page.keyboard.press("k")  # back to the fourth: its verdict and notes are shown again
        assert fourth in page.text_content("#pair") and "both bad" in page.inner_text("#status")
        assert page.input_value("#comment") == "both miss the owner"
        screenshot(page, "review-judged.png", tmp_path)

        page.click("#switch")  # a second reviewer on the same browser
        page.wait_for_selector("#reviewer", state="visible")
        page.keyboard.type("ben")
        page.keyboard.press("Enter")
        page.wait_for_selector("#review:not(.hidden)")
        assert page.inner_text("#progress") == f"0 / {len(pairs)} judged"
        ben = [judge(page, "1"), judge(page, "1"), judge(page, "2")]
        assert ben == ana[:3]

    judgments = [json.loads(line) for line in (ws / "reviews" / run / "judgments.jsonl").read_text().splitlines()]
    assert [(j["reviewer"], j["verdict"]) for j in judgments] == [
        ("ana", "A"),
        ("ana", "B"),
        ("ana", "tie"),
        ("ana", "both_bad"),
        ("ben", "A"),
        ("ben", "A"),
        ("ben", "B"),
    ]

    capsys.readouterr()
    assert main(["review", "export", run, "-w", str(ws)]) == 0
    assert "4 pairs judged by 2 reviewer(s)" in capsys.readouterr().out
    review_run = max((ws / "runs").glob("review-*"), key=lambda p: p.stat().st_mtime)
    manifest = json.loads((review_run / "manifest.json").read_text())
    assert run in manifest["parents"]
    review = manifest["results"]["review"]
    assert review["reviewers"]["ana"]["judged"] == 4 and review["reviewers"]["ben"]["judged"] == 3
    assert review["both_bad"] == 1 and review["ties"] == 1
    agreement = review["agreement"]["pairs"][0]
    assert agreement["reviewers"] == ["ana", "ben"] and agreement["pairs"] == 3
    assert agreement["agreement"] == pytest.approx(1 / 3)  # they agree on the first pair only
    report = (ws / "reports/eval-report.md").read_text()
    assert "Per reviewer" in report and "- ana: 4 judged" in report and "ana & ben: 3 pairs, 33% agree" in report

    prefs = [json.loads(line) for line in (ws / "data/preferences" / f"review-{run}.jsonl").read_text().splitlines()]
    corrected = [p for p in prefs if p["meta"].get("corrected_by") == "ana"]
    assert len(corrected) == 2  # both answers were bad: the correction is chosen over each
    assert {p["chosen"][0]["content"] for p in corrected} == {"First step: page the table owner."}
    preferred = [p for p in prefs if "preferred" in p["meta"]]
    # the first (both prefer A) and the third (a tie and a B); the second is a draw, the fourth both bad
    assert sorted(sorted(p["meta"]["votes"].values()) for p in preferred) == [[1, 1], [2]]
    assert all(p["chosen"] != p["rejected"] and p["source"] == f"review:{run}" for p in prefs)


def test_the_review_needs_its_token_when_one_is_set(quickstart_copy, launch, monkeypatch, tmp_path):
    ws = quickstart_copy
    run = _eval_id(ws)
    monkeypatch.setenv("REVIEW_TOKEN", "s3cret-token")
    url = _review_server(launch, ws, run, "--token-env", "REVIEW_TOKEN", token="s3cret-token")
    assert httpx.get(f"{url}api/pairs").status_code == 401
    assert httpx.get(url).status_code == 401
    assert httpx.get(f"{url}api/pairs", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert httpx.get(f"{url}api/pairs", headers={"Authorization": "Bearer s3cret-token"}).status_code == 200
    bad = {"reviewer": "ana", "pair_id": "p0001", "verdict": "maybe"}
    headers = {"Authorization": "Bearer s3cret-token"}
    assert httpx.post(f"{url}api/judgments", json=bad, headers=headers).status_code == 400
    unknown = {**bad, "verdict": "A", "pair_id": "p9999"}
    assert httpx.post(f"{url}api/judgments", json=unknown, headers=headers).status_code == 400
    with chromium_page() as page:  # the page passes the token from its address on to the API
        start_reviewing(page, f"{url}?token=s3cret-token", "cy")
        judge(page, "2")
    lines = (ws / "reviews" / run / "judgments.jsonl").read_text().splitlines()
    assert [json.loads(line)["reviewer"] for line in lines] == ["cy"]


def test_review_usage_errors(quickstart_copy, capsys):
    ws = quickstart_copy
    assert main(["review", "serve", "nope", "-w", str(ws)]) == 2
    capsys.readouterr()
    assert main(["review", "export", _eval_id(ws), "-w", str(ws)]) == 2
    assert "nobody has judged" in capsys.readouterr().err
    train = next((ws / "runs").glob("train-*")).name
    assert main(["review", "serve", train, "-w", str(ws)]) == 2
    assert "expected an eval run" in capsys.readouterr().err
    assert main(["review", "serve", "-w", str(ws)]) == 2  # RUN is required
