"""The paper trail: a model card and release notes generated from the registry and the runs,
and `runs lineage` reaching every raw source and the base model with their licenses."""

import json
from pathlib import Path

from tunewright.cli.main import main

FAST_EVAL = [
    "generation.max_new_tokens=32",
    "tasks=[{name: golden, data: data/raw/eval/golden.jsonl, scorers: [{type: format, pattern: '^First step: '}]}]",
    "gates=[{metric: golden.format_rate, op: '>=', threshold: 0.0}]",
]


def test_the_quickstart_leaves_a_model_card_and_first_release_notes(quickstart_run):
    ws, stdout = quickstart_run
    card = (ws / "reports/model-card.md").read_text()
    assert card.startswith("# Model card: support-assistant v1")
    assert "Aliases: production." in card and "promote by" in card
    assert "license apache-2.0 (allowed under the policy)" in card  # the base model's README front matter
    assert "| support_tickets | data/raw/support_tickets.jsonl | CC-BY-4.0 | allowed |" in card
    assert "| learning_rate | 0.004 |" in card and "rank 16, alpha 32.0" in card
    eval_run = json.loads((ws / "exports/support-assistant/v1/manifest.json").read_text())["results"]["eval"]["run_id"]
    assert f"Eval run `{eval_run}`: **GO** against **base**" in card
    assert "| support.format_rate | >= 0.9 | critical | PASS |" in card
    assert "## Known failure modes" in card and "Answers on-call questions" in card
    notes = (ws / "reports/release-notes.md").read_text()
    assert "First release of support-assistant" in notes and "## What to watch after deployment" in notes
    assert "model card:" in stdout and "release notes:" in stdout
    (card_run,) = [p for p in (ws / "runs").iterdir() if p.name.startswith("card-")]
    manifest = json.loads((card_run / "manifest.json").read_text())
    assert {o["path"] for o in manifest["outputs"]} >= {"reports/model-card.md", "reports/release-notes.md"}
    assert eval_run in manifest["parents"]


def test_release_notes_say_what_changed_against_the_previous_production_version(quickstart_copy, capsys):
    ws = quickstart_copy
    w = ["-w", str(ws)]
    assert main(["train", *w, "training.max_steps=60", "training.learning_rate=0.003", "checkpoint.every=null"]) == 0
    assert main(["export", "latest:train", "--name", "support-assistant", *w]) == 0
    base = ["--model", "support-assistant@v2", "--baseline", "support-assistant@production"]
    assert main(["eval", *w, *base, *FAST_EVAL]) == 0
    paired_eval = max((ws / "runs").glob("eval-*"), key=lambda p: p.stat().st_mtime).name
    assert main(["promote", "support-assistant", "--to", "production", "--reason", "shorter schedule", *w]) == 0
    assert main(["card", "support-assistant", *w]) == 0
    notes = (ws / "reports/release-notes.md").read_text()
    assert notes.startswith("# Release notes: support-assistant v2")
    assert "Replaces support-assistant v1 in production" in notes
    assert "tunewright rollback support-assistant --to production" in notes
    assert "- Data: the same curation run(s); the same training data." in notes
    assert "| training.max_steps | 1000 | 60 |" in notes and "| training.learning_rate | 0.004 | 0.003 |" in notes
    assert f"Paired on the same items by eval `{paired_eval}`" in notes
    assert "| golden.format_rate |" in notes
    card = (ws / "reports/model-card.md").read_text()
    assert card.startswith("# Model card: support-assistant v2") and "shorter schedule" in card
    capsys.readouterr()
    assert main(["card", "support-assistant@v1", *w]) == 0  # an older version: compared with production now
    assert "# Release notes: support-assistant v1" in (ws / "reports/release-notes.md").read_text()


def test_card_of_an_unknown_model_or_version_is_refused_and_writes_nothing(quickstart_copy, capsys):
    ws = quickstart_copy
    before = (ws / "reports/model-card.md").read_bytes()
    runs_before = set((ws / "runs").iterdir())
    assert main(["card", "nosuch", "-w", str(ws)]) == 2
    assert "there is no export named 'nosuch'" in capsys.readouterr().err
    assert main(["card", "support-assistant@v9", "-w", str(ws)]) == 2
    assert "has no version v9" in capsys.readouterr().err
    assert main(["card", "support-assistant@staging", "-w", str(ws)]) == 2
    assert "no version of 'support-assistant' is 'staging'" in capsys.readouterr().err
    assert (ws / "reports/model-card.md").read_bytes() == before
    assert set((ws / "runs").iterdir()) == runs_before


def test_runs_lineage_reaches_every_raw_source_with_its_license(quickstart_run, capsys):
    ws: Path = quickstart_run[0]
    assert main(["runs", "lineage", "latest:export", "-w", str(ws)]) == 0
    out = capsys.readouterr().out
    assert "- base model models/tiny-base: license apache-2.0" in out
    assert "- raw data/raw/support_tickets.jsonl: license CC-BY-4.0" in out
    assert "- raw data/raw/runbook_chats.jsonl: license Apache-2.0" in out
    assert "- raw data/raw/handbook.jsonl: license not recorded" in out  # the demo base's pre-training text


def test_runs_take_the_version_references_every_other_verb_takes(quickstart_run, capsys):
    ws: Path = quickstart_run[0]
    assert main(["runs", "lineage", "latest:export", "-w", str(ws)]) == 0
    expected = capsys.readouterr().out
    for ref in ("support-assistant@production", "support-assistant@v1", "exports/support-assistant"):
        assert main(["runs", "lineage", ref, "-w", str(ws)]) == 0, ref
        assert capsys.readouterr().out == expected
    assert main(["runs", "show", "support-assistant@latest", "-w", str(ws)]) == 0
    assert json.loads(capsys.readouterr().out)["stage"] == "export"
    assert main(["runs", "diff", "support-assistant@v1", "latest:export", "-w", str(ws)]) == 0
    assert main(["runs", "show", "support-assistant@staging", "-w", str(ws)]) == 2
    assert "no version of 'support-assistant' is 'staging'" in capsys.readouterr().err
