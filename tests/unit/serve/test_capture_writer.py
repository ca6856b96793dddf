"""The capture store and writer without a model: PII handling, feedback joins, caps, queue bounds, failures."""

import json
import logging
import time
from collections import Counter

import pytest

from tunewright.core import capture_store as store
from tunewright.serve.capture import Capture, scrub
from tunewright.serve.config import CaptureConfig

EMAIL, CARD, PHONE, KEY = "dana.smith@example.com", "4111 1111 1111 1111", "+1 415 555 0133", "sk-" + "a1B2" * 10


def row(rid, ts=None, content="hello", arguments="{}"):
    return {
        "id": rid,
        "ts": time.time() if ts is None else ts,
        "route": "chat.completions",
        "model": "tiny",
        "adapter": None,
        "workload": "team-a",
        "status": 200,
        "finish_reason": "stop",
        "stream": 0,
        "prompt_tokens": 5,
        "completion_tokens": 3,
        "queue_s": 0.0,
        "ttft_s": 0.01,
        "total_s": 0.02,
        "request": {"messages": [{"role": "user", "content": content}]},
        "response": {
            "choices": [{"content": None, "tool_calls": [{"function": {"name": "f", "arguments": arguments}}]}]
        },
    }


def wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_scrub_reaches_nested_strings_and_tool_arguments():
    counts = Counter()
    value = {"messages": [{"content": f"mail {EMAIL} or call {PHONE}"}], "args": json.dumps({"card": CARD, "k": KEY})}
    out = scrub(value, "redact", ("email", "phone", "credit_card", "secret"), "", counts)
    text = json.dumps(out)
    assert EMAIL not in text and PHONE not in text and "1111 1111" not in text and KEY not in text
    assert "[EMAIL]" in out["messages"][0]["content"] and json.loads(out["args"])["card"] == "[CREDIT_CARD]"
    assert counts == {"email": 1, "phone": 1, "credit_card": 1, "secret": 1}


def test_store_joins_feedback_and_refuses_unknown_ids(tmp_path):
    conn = store.connect(tmp_path / "c.sqlite")
    store.insert_requests(conn, [{**row("r1"), "window_id": "w", "version": "v1", "pii": {}}])
    assert store.add_feedback(conn, "r1", {"score": 1.0, "comment": "good"}, {})
    assert not store.add_feedback(conn, "nope", {"score": 0.0}, {})
    (item,) = store.read_requests(conn)
    assert item["request"]["messages"][0]["content"] == "hello" and item["version"] == "v1"
    assert [f["score"] for f in item["feedback"]] == [1.0]


def test_prune_drops_old_rows_then_oldest_until_the_size_fits(tmp_path):
    conn = store.connect(tmp_path / "c.sqlite")
    now = time.time()
    rows = [
        {**row(f"r{i}", ts=now - 1000 + i, content="x" * 2000), "window_id": "w", "version": None, "pii": {}}
        for i in range(200)
    ]
    store.insert_requests(conn, rows)
    assert store.prune(conn, max_bytes=10**9, max_age_s=1000 - 50, now=now) == 50  # r0..r49 are too old
    store.prune(conn, max_bytes=100_000, max_age_s=10**6, now=now)
    left = [r["id"] for r in store.read_requests(conn)]
    assert 0 < len(left) < 150 and left == [f"r{i}" for i in range(200 - len(left), 200)]  # the newest kept


def test_capture_redacts_before_writing_and_counts(tmp_path):
    capture = Capture(CaptureConfig(enabled=True), tmp_path / "c.sqlite", "w1", {"tiny": "exports/tiny/v1"})
    capture.start()
    capture.record(row("r1", content=f"I am {EMAIL}, card {CARD}", arguments=json.dumps({"token": KEY})))
    capture.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert EMAIL.encode() not in raw and b"4111 1111" not in raw and KEY.encode() not in raw
    (item,) = store.read_requests(store.connect(tmp_path / "c.sqlite", readonly=True))
    assert item["pii"] == {"email": 1, "credit_card": 1, "secret": 1} and item["window_id"] == "w1"
    assert item["version"] == "exports/tiny/v1" and capture.counts["pii_email"] == 1


def test_drop_content_keeps_metadata_only_for_records_with_pii(tmp_path):
    capture = Capture(CaptureConfig(enabled=True, pii="drop-content"), tmp_path / "c.sqlite", "w", {})
    capture.start()
    capture.record(row("clean"))
    capture.record(row("dirty", content=f"write to {EMAIL}"))
    capture.close()
    items = {r["id"]: r for r in store.read_requests(store.connect(tmp_path / "c.sqlite", readonly=True))}
    assert items["clean"]["request"] is not None
    assert items["dirty"]["request"] is None and items["dirty"]["response"] is None
    assert items["dirty"]["pii"] == {"email": 1} and items["dirty"]["completion_tokens"] == 3


def test_a_full_queue_drops_records_without_waiting(tmp_path):
    capture = Capture(CaptureConfig(enabled=True, queue_size=2), tmp_path / "c.sqlite", "w", {})
    capture.enabled = True  # the writer is not started: nothing leaves the queue
    started = time.perf_counter()
    for i in range(5):
        capture.record(row(f"r{i}"))
    assert time.perf_counter() - started < 1
    assert capture.counts["dropped_queue_full"] == 3 and capture.queue.qsize() == 2


def test_a_store_that_cannot_be_opened_turns_capture_off(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    states = []
    capture = Capture(CaptureConfig(enabled=True), blocker / "c.sqlite", "w", {})
    capture.on_state = states.append
    with caplog.at_level(logging.ERROR, "tunewright.serve"):
        capture.start()
    assert not capture.enabled and states == [False] and "capture is off" in caplog.text
    capture.record(row("r1"))  # ignored, no error
    assert capture.queue.qsize() == 0


def test_a_full_disk_turns_capture_off_and_serving_goes_on(tmp_path, caplog):
    capture = Capture(CaptureConfig(enabled=True), tmp_path / "c.sqlite", "w", {})
    capture.start()
    capture.conn.execute("PRAGMA max_page_count = 8")  # SQLite reports the disk full beyond 8 pages
    with caplog.at_level(logging.ERROR, "tunewright.serve"):
        for i in range(50):
            capture.record(row(f"r{i}", content="y" * 4000))
        wait_for(lambda: not capture.enabled)
    assert "cannot be written" in caplog.text and capture.counts["dropped_error"] > 0
    capture.record(row("later"))  # ignored once off
    capture.close()
    conn = store.connect(tmp_path / "c.sqlite", readonly=True)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_unknown_pii_types_are_a_config_error():
    with pytest.raises(ValueError, match="unknown PII types"):
        CaptureConfig(pii_types=["email", "shoe_size"])
