import json

import pytest

from tunewright.core.config import load_config
from tunewright.core.errors import DataError
from tunewright.core.io import read_jsonl_strict
from tunewright.core.runs import start_run
from tunewright.curate.config import CurateConfig
from tunewright.curate.stage import SPLITS, curate


def run_curate(ws, overrides=()):
    cfg = load_config(ws / "configs" / "curate.yaml", CurateConfig, list(overrides))
    with start_run(ws, "curate", [], cfg.model_dump()) as run:
        return curate(cfg, ws, run), run


def count_lines(path):
    return len(path.read_bytes().splitlines())


CHAT_SOURCES = ("support_tickets.jsonl", "runbook_chats.jsonl", "ops_tool_calls.jsonl", "alert_extractions.jsonl")


def test_sample_corpus_is_conserved_and_traceable(workspace):
    result, run = run_curate(workspace)
    raw_lines = sum(count_lines(workspace / "data/raw" / f) for f in CHAT_SOURCES)
    split_rows = [
        json.loads(line)
        for s in ("train", "validation", "test")
        for line in (workspace / "data/splits" / f"{s}.jsonl").read_text().splitlines()
    ]
    logged = [
        json.loads(line) for p in (workspace / "data/quarantine").glob("*.jsonl") for line in p.read_text().splitlines()
    ]
    quarantined = [q for q in logged if q["action"] == "removed"]
    assert result.lines_read == raw_lines
    assert len(split_rows) + len(quarantined) == raw_lines
    origins = {(r["meta"]["path"], r["meta"]["line"]) for r in split_rows}
    origins |= {(q["path"], q["line"]) for q in quarantined}
    assert len(origins) == raw_lines
    steps = {q["step"] for q in quarantined}
    assert steps == {
        "read",
        "normalise",
        "drop_empty",
        "quality",
        "language",
        "exact_dedup",
        "fuzzy_dedup",
        "decontaminate",
    }
    modified = {q["step"] for q in logged if q["action"] == "modified"}
    assert modified == {"clean", "pii"}
    assert not any(pii in json.dumps(split_rows) for pii in ("jane.doe@example.com", "+1 415 555 0134"))
    bad_calls = {q["reason"] for q in quarantined if q["path"] == "data/raw/ops_tool_calls.jsonl"}
    assert bad_calls >= {
        f"the arguments of a call to 'open_incident' do not match its parameters: {problem}"
        for problem in ("'urgent' is not one of ['high', 'low']", "'kind' is a required property")
    } | {"calls 'page_oncall', which is not one of the record's tools"}
    assert any(r.startswith("the arguments of a call to 'check_freshness' are not JSON") for r in bad_calls)
    tool_rows = [r for r in split_rows if r["source"] == "ops_tool_calls"]
    assert all(r["tools"] for r in tool_rows) and any(m["role"] == "tool" for r in tool_rows for m in r["messages"])
    assert all(q["reason"] for q in quarantined)
    card = (workspace / "reports/data-card.md").read_text()
    assert "CC-BY-4.0" in card
    assert result.split_hashes["train"] in card
    manifest = json.loads((workspace / "runs" / run.run_id / "manifest.json").read_text())
    assert manifest["results"]["split_sha256"] == result.split_hashes


def test_missing_source_writes_nothing(workspace):
    with pytest.raises(DataError, match="file not found"):
        run_curate(workspace, ["sources.0.path=data/raw/absent.jsonl"])
    assert not any((workspace / "data/splits").iterdir())
    assert not any((workspace / "runs").iterdir())


def test_all_lines_bad_is_an_error_and_keeps_previous_splits(workspace):
    run_curate(workspace)
    before = (workspace / "data/splits/train.jsonl").read_bytes()
    bad = workspace / "data/raw/bad.jsonl"
    bad.write_text("nope\n{]\n")
    override = ["sources=[{name: bad, path: data/raw/bad.jsonl, license: MIT}]"]
    with pytest.raises(DataError, match="no records left"):
        run_curate(workspace, override)
    assert (workspace / "data/splits/train.jsonl").read_bytes() == before


def only_source(ws, name, path, fmt, extra=""):
    return [
        f"sources=[{{name: {name}, path: {path}, format: {fmt}, license: MIT{extra}}}]",
        "decontaminate.enabled=false",
    ]


def assert_nothing_written(ws):
    assert not any((ws / "data/splits").iterdir())
    assert not any((ws / "data/quarantine").iterdir())
    assert not any((ws / "runs").iterdir())


def test_corrupt_parquet_is_a_clear_error(workspace):
    (workspace / "data/raw/bad.parquet").write_bytes(b"PAR1 not really parquet PAR1")
    with pytest.raises(DataError, match="not a readable Parquet file"):
        run_curate(workspace, only_source(workspace, "pq", "data/raw/bad.parquet", "parquet"))
    assert_nothing_written(workspace)


def test_csv_with_missing_mapped_column(workspace):
    (workspace / "data/raw/t.csv").write_text("question,reply\nq?,a.\n")
    with pytest.raises(DataError, match=r"lacks mapped column\(s\) answer; it has question, reply"):
        run_curate(
            workspace,
            only_source(workspace, "c", "data/raw/t.csv", "csv", ", columns: {prompt: question, response: answer}"),
        )
    assert_nothing_written(workspace)


def test_csv_source_is_read_with_line_numbers(workspace):
    rows = "\n".join(f'"Is table t{i} stale today?","Check the freshness monitor for t{i}."' for i in range(20))
    (workspace / "data/raw/t.csv").write_text("question,answer\n" + rows + "\n")
    run_curate(
        workspace,
        only_source(workspace, "c", "data/raw/t.csv", "csv", ", columns: {prompt: question, response: answer}"),
    )
    records = [r for name in SPLITS for r in read_jsonl_strict(workspace / f"data/splits/{name}.jsonl")]
    assert len(records) == 20
    assert sorted(r["meta"]["line"] for r in records) == list(range(2, 22))


def test_empty_source_is_a_clear_error(workspace):
    (workspace / "data/raw/empty.jsonl").write_text("")
    with pytest.raises(DataError, match="is empty"):
        run_curate(workspace, only_source(workspace, "e", "data/raw/empty.jsonl", "jsonl"))
    assert_nothing_written(workspace)


def test_invalid_utf8_line_is_quarantined(workspace):
    good = json.dumps({"prompt": "Is the ledger stale?", "response": "Check the freshness monitor first."})
    (workspace / "data/raw/u.jsonl").write_bytes(good.encode() + b"\n" + b'{"prompt": "\xff\xfe"}\n')
    result, _ = run_curate(
        workspace, [*only_source(workspace, "u", "data/raw/u.jsonl", "jsonl"), "split.test=0", "split.validation=0"]
    )
    assert [e["reason"] for e in result.quarantine.entries["read"]] == ["invalid UTF-8 at byte 12"]
    assert result.quarantine.entries["read"][0]["line"] == 2


def test_disallowed_license_can_be_skipped_and_is_recorded(workspace):
    result, _ = run_curate(workspace, ["sources.1.license=GPL-3.0", "on_disallowed=skip"])
    assert "runbook_chats" in result.skipped_sources
    records = [r for name in SPLITS for r in read_jsonl_strict(workspace / f"data/splits/{name}.jsonl")]
    assert records and "runbook_chats" not in {r["source"] for r in records}
    assert "skipped: license 'GPL-3.0'" in (workspace / "reports/data-card.md").read_text()


def test_curate_with_workers_writes_identical_outputs(workspace):
    def outputs():
        files = [workspace / f"data/splits/{s}.jsonl" for s in SPLITS]
        files += sorted((workspace / "data/quarantine").glob("*.jsonl"))
        return {p.name: p.read_bytes() for p in files}, (workspace / "reports/data-card.md").read_text()

    run_curate(workspace, ["workers=1"])
    single = outputs()
    run_curate(workspace, ["workers=2"])
    files, card = outputs()
    assert files == single[0]
    assert card.splitlines() == single[1].splitlines()
    assert not any(p.name.startswith(".curate-") for p in (workspace / "runs").iterdir())


def test_the_quarantine_never_stores_a_pii_value(workspace):
    email, card, phone = "jane.roe@example.org", "4111 1111 1111 1111", "+44 20 7946 0958"
    with (workspace / "data/raw/support_tickets.jsonl").open("a") as fh:
        fh.write(f'{{"prompt": "charge {card} for {email}", "response": \n')  # malformed: goes to read.jsonl
        fh.write(json.dumps({"prompt": f"call {phone}", "response": "Lorem ipsum dolor sit amet."}) + "\n")
    run_curate(workspace)
    stored = "".join(p.read_text() for p in (workspace / "data/quarantine").glob("*.jsonl"))
    card_text = (workspace / "reports/data-card.md").read_text()
    for value in (email, card, phone):
        assert value not in stored and value not in card_text
    lines = count_lines(workspace / "data/raw/support_tickets.jsonl")
    read = [json.loads(x) for x in (workspace / "data/quarantine/read.jsonl").read_text().splitlines()]
    planted = next(e for e in read if e["line"] == lines - 1)
    assert planted["path"] == "data/raw/support_tickets.jsonl"  # file:line still lead to the original
    assert "[CREDIT_CARD]" in planted["raw"] and "[EMAIL]" in planted["raw"]
    quality = [json.loads(x) for x in (workspace / "data/quarantine/quality.jsonl").read_text().splitlines()]
    assert any("[PHONE]" in m["content"] for e in quality for m in e["record"]["messages"])


def test_data_card_counts_kept_modifications_sources_and_lengths(workspace):
    result, run = run_curate(workspace)
    card = (workspace / "reports/data-card.md").read_text()
    splits = [
        json.loads(line) for s in SPLITS for line in (workspace / "data/splits" / f"{s}.jsonl").read_text().splitlines()
    ]
    kept_ids = {r["id"] for r in splits}
    quarantine = (workspace / "data/quarantine").glob("*.jsonl")
    logged = [json.loads(x) for p in quarantine for x in p.read_text().splitlines()]
    modified_ids = {e["id"] for e in logged if e["action"] == "modified"}
    kept_modified = len(modified_ids & kept_ids)
    assert modified_ids - kept_ids, "the sample has records that were cleaned and later removed"
    assert f"{kept_modified} of the {len(splits)} kept records were modified" in card
    assert f"; {len(modified_ids - kept_ids)} more were modified and later removed." in card
    assert run.results["modified_kept"] == kept_modified
    for source in ("support_tickets", "runbook_chats"):
        kept = sum(r["source"] == source for r in splits)
        assert f"| {result.lines_by_source[source]} | {kept} |" in card
        assert run.results["kept_by_source"][source] == kept
    assert "## Lengths of the kept records (words)" in card
    answer_words = sorted(len(r["messages"][-1]["content"].split()) for r in splits)
    train = result.lengths()["train"]["answer_words"]
    assert train["max"] <= answer_words[-1] and train["min"] >= answer_words[0]
    assert "at at" not in card and "decontaminate_scan" not in card
    assert "| golden.jsonl |" in card and "n-grams ignored as common" in card


def test_tool_use_records_are_checked_scrubbed_and_counted(workspace):
    tool = {
        "type": "function",
        "function": {
            "name": "page_owner",
            "parameters": {
                "type": "object",
                "properties": {"table": {"type": "string"}, "email": {"type": "string"}},
                "required": ["table", "email"],
            },
        },
    }

    def record(i, arguments):
        call = {"type": "function", "function": {"name": "page_owner", "arguments": json.dumps(arguments)}}
        return {
            "tools": [tool],
            "messages": [
                {"role": "user", "content": f"Table sales.t{i} is stale, page its owner please."},
                {"role": "assistant", "content": None, "tool_calls": [call]},
                {"role": "tool", "content": f'{{"paged": "owner{i}@example.com"}}'},
                {"role": "assistant", "content": f"I paged the owner of sales.t{i}; they have been notified."},
            ],
        }

    lines = [json.dumps(record(i, {"table": f"sales.t{i}", "email": f"owner{i}@example.com"})) for i in range(6)]
    lines.append(json.dumps(record(6, {"table": "sales.t6"})))  # misses a required argument
    (workspace / "data/raw/tools.jsonl").write_text("\n".join(lines) + "\n")
    result, _ = run_curate(
        workspace, [*only_source(workspace, "t", "data/raw/tools.jsonl", "jsonl"), "split.test=0", "split.validation=0"]
    )
    (bad,) = result.quarantine.entries["normalise"]
    assert bad["line"] == 7 and "do not match its parameters: 'email' is a required property" in bad["reason"]
    kept = read_jsonl_strict(workspace / "data/splits/train.jsonl")
    assert len(kept) == 6 and all(r["tools"] == [tool] for r in kept)
    arguments = [r["messages"][1]["tool_calls"][0]["function"]["arguments"] for r in kept]
    assert all("@example.com" not in a["email"] and a["table"].startswith("sales.t") for a in arguments)
    assert all("@example.com" not in r["messages"][2]["content"] for r in kept)  # the tool's result too
    card = (workspace / "reports/data-card.md").read_text()
    assert "## Tool use" in card and "6 of the 6 kept records declare tools" in card
    assert "| page_owner | 6 | 6 |" in card
