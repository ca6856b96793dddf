import json
import math
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tunewright.core.errors import DataError
from tunewright.evaluate.config import TaskConfig
from tunewright.evaluate.items import load_task
from tunewright.evaluate.judge import parse_preference, parse_score
from tunewright.runtimes.net import free_port
from tunewright.runtimes.openai_client import EndpointError, OpenAIClient


def write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def test_items_of_both_shapes(tmp_path):
    t = TaskConfig(name="t", data="x", scorers=[{"type": "token_f1"}])
    path = write(
        tmp_path / "t.jsonl",
        [
            {"id": "a", "messages": [{"role": "user", "content": "q?"}, {"role": "assistant", "content": "ref"}]},
            {"prompt": "p?", "response": "r"},
            {"prompt": "only?", "reference": "r2", "assert": [{"type": "icontains", "value": "x"}]},
        ],
    )
    task = load_task(t, path)
    assert [it.id for it in task.items] == ["a", "t:2", "t:3"]
    assert [it.reference for it in task.items] == ["ref", "r", "r2"]
    assert task.items[2].prompt == [{"role": "user", "content": "only?"}] and task.items[2].assertions[0].value == "x"


def test_preference_pairs_are_items_with_both_answers(tmp_path):
    t = TaskConfig(name="t", data="x", scorers=[{"type": "preference"}])
    prompt = [{"role": "user", "content": "q?"}]
    path = write(
        tmp_path / "t.jsonl",
        [
            {"id": "p", "prompt": prompt, "chosen": "good", "rejected": "bad"},
            {
                "chosen": [*prompt, {"role": "assistant", "content": "g"}],
                "rejected": [*prompt, {"role": "assistant", "content": "b"}],
            },
        ],
    )
    items = load_task(t, path).items
    assert [(it.reference, it.rejected, it.prompt) for it in items] == [("good", "bad", prompt), ("g", "b", prompt)]
    write(path, [{"prompt": "?", "reference": "r"}])
    with pytest.raises(DataError, match=r"t\.jsonl:1: scorer 'preference' needs \{prompt, chosen, rejected\}"):
        load_task(t, path)
    write(path, [{"chosen": "a", "rejected": "b"}])
    with pytest.raises(DataError, match=r"t\.jsonl:1: preference pair has no prompt"):
        load_task(t, path)


@pytest.mark.parametrize(
    ("scorers", "row", "message"),
    [
        ([{"type": "token_f1"}], {"prompt": "no reference"}, r"t\.jsonl:2: scorer 'token_f1' needs a reference"),
        ([], {"question": "?"}, r"t\.jsonl:2: expected 'messages' or 'prompt', found question"),
        ([{"type": "refusal"}], {"prompt": "?"}, r"t\.jsonl:2: scorer 'refusal' needs `expect"),
        ([], {"prompt": "?", "expect": "maybe"}, r"t\.jsonl:2: expect must be 'refuse' or 'answer'"),
        ([], {"prompt": "?", "assert": [{"type": "max-length", "value": "x"}]}, r"t\.jsonl:2: assert\[0\]"),
        (
            [{"type": "classification", "labels": ["yes", "no"]}],
            {"prompt": "?", "label": "maybe"},
            r"t\.jsonl:2: label 'maybe' is not one of",
        ),
        ([], "{not json", r"t\.jsonl:2: malformed JSON"),
        ([], {"messages": [{"role": "user", "content": "?"}, {"role": "user"}]}, r"t\.jsonl:2: messages\[1\]"),
    ],
)
def test_a_bad_item_names_file_and_line(tmp_path, scorers, row, message):
    t = TaskConfig(name="t", data="x", scorers=scorers)
    path = write(tmp_path / "t.jsonl", [{"prompt": "fine", "reference": "r", "expect": "answer", "label": "no"}, row])
    with pytest.raises(DataError, match=message):
        load_task(t, path)


def test_duplicate_ids_and_empty_files_are_refused(tmp_path):
    t = TaskConfig(name="t", data="x")
    with pytest.raises(DataError, match="'a' appears more than once"):
        load_task(t, write(tmp_path / "d.jsonl", [{"id": "a", "prompt": "1"}, {"id": "a", "prompt": "2"}]))
    (tmp_path / "e.jsonl").write_text("")
    with pytest.raises(DataError, match="has no items"):
        load_task(t, tmp_path / "e.jsonl")


def test_judge_verdicts_from_text():
    assert parse_score("Score: 4. Clear and correct.") == 4.0
    assert parse_score("5") == 5.0 and parse_score("  3/5 because") == 3.0
    assert parse_score("Step 2 is wrong, score is 2") == 2.0
    assert parse_score("It has 7 steps") is None and parse_score("") is None
    assert parse_preference("A") == 1.0 and parse_preference("B is better") == 0.0
    assert parse_preference("Tie.") == 0.5 and parse_preference("A customer would like...") is None
    assert parse_preference("Both are fine") is None


def test_judge_verdicts_from_top_logprobs_when_the_text_has_none():
    top = [
        {"token": "3", "logprob": math.log(0.3)},
        {"token": "4", "logprob": math.log(0.1)},
        {"token": "x", "logprob": 0},
    ]
    assert parse_score("The", top) == pytest.approx((3 * 0.3 + 4 * 0.1) / 0.4)
    assert parse_score("The", [{"token": "the", "logprob": -0.1}]) is None
    assert (
        parse_preference("", [{"token": "B", "logprob": math.log(0.5)}, {"token": "A", "logprob": math.log(0.5)}])
        == 0.5
    )


class Flaky(BaseHTTPRequestHandler):
    failures = 2
    calls = 0

    def do_GET(self):
        type(self).calls += 1
        if type(self).calls <= type(self).failures:
            self.send_response(503)
            self.end_headers()
            self.wfile.write(b'{"error": {"message": "warming up"}}')
            return
        body = json.dumps({"data": [{"id": "m"}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_client_retries_503_then_succeeds_and_gives_up_clearly():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Flaky)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/v1"
        assert OpenAIClient(url, retries=2, backoff_s=0.01).models() == ["m"]
        Flaky.calls, Flaky.failures = 0, 5
        with pytest.raises(EndpointError, match=r"/v1/models failed after 3 attempt\(s\): HTTP 503: warming up"):
            OpenAIClient(url, retries=2, backoff_s=0.01).models()
    finally:
        server.shutdown()
    dead = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(EndpointError, match=r"failed after 2 attempt\(s\): ConnectError"):
        OpenAIClient(dead, retries=1, backoff_s=0.01).models()


def test_a_task_scores_only_the_sources_it_names(tmp_path):
    rows = [
        {"id": "a", "source": "tickets", "prompt": "q1?", "response": "r1"},
        {"id": "b", "source": "tools", "prompt": "q2?", "response": "r2"},
        {"id": "c", "prompt": "q3?", "response": "r3"},
        {"id": "d", "source": "chats", "prompt": "q4?", "response": "r4"},
    ]
    path = write(tmp_path / "split.jsonl", rows)
    task = TaskConfig(name="t", data="x", sources=["tickets", "chats"], scorers=[{"type": "token_f1"}])
    assert [it.id for it in load_task(task, path).items] == ["a", "d"]
    assert [it.id for it in load_task(TaskConfig(name="t", data="x"), path).items] == ["a", "b", "c", "d"]
    with pytest.raises(DataError, match="has no items from the sources extraction"):
        load_task(TaskConfig(name="t", data="x", sources=["extraction"]), path)
    with pytest.raises(ValueError, match="`sources` lists at least one source"):
        TaskConfig(name="t", data="x", sources=[])
    with pytest.raises(ValueError, match="scored by the harness"):
        TaskConfig(name="t", kind="lm_eval", task="arc_easy", sources=["tickets"])
