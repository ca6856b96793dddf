"""The model card reads runs through their typed views: a run recorded without the old `method` key, an old run
with it, and a preference source whose kept pairs are counted under `preference_pairs`."""

from pathlib import Path

from tunewright.release.card import CardConfig, model_card
from tunewright.release.facts import VersionFacts


def facts(train_config, curate_results=None):
    train = {"run_id": "train-1", "config": train_config, "results": {"steps": 3}}
    curate = {
        "run_id": "curate-1",
        "config": {"sources": [{"name": "chats", "path": "data/raw/c.jsonl"}, {"name": "prefs", "path": "p.jsonl"}]},
        "results": curate_results or {},
    }
    export = {"run_id": "export-1", "results": {"format": "merged", "parity_prompts": 12, "base_model": {}}}
    return VersionFacts("m", 1, Path("/ws/exports/m/v1"), export, train, [curate], None, None, [], [])


def method_line(card: str) -> str:
    return next(line for line in card.splitlines() if line.startswith("- Training run"))


def test_the_training_method_is_read_from_objective_and_adapter_or_the_old_method_key():
    new = model_card(facts({"objective": "dpo", "adapter": "lora", "task": "chat"}), CardConfig())
    assert "DPO, lora on the `chat` task" in method_line(new)
    bare = model_card(facts({}), CardConfig())  # neither key: the defaults, a full SFT fine-tune
    assert "SFT, full fine-tune on the `chat` task" in method_line(bare)
    old = model_card(facts({"method": "dora"}), CardConfig())
    assert "SFT, dora" in method_line(old)


def test_a_preference_sources_kept_pairs_are_counted():
    results = {
        "lines_read": 10, "kept": 8, "quarantined": 2, "kept_by_source": {"chats": 8},
        "preference_pairs": {"lines_read": 5, "kept": 4, "quarantined": 1, "kept_by_source": {"prefs": 4}},
    }  # fmt: skip
    card = model_card(facts({"adapter": "lora"}, results), CardConfig())
    rows = {line.split("|")[1].strip(): line for line in card.splitlines() if line.startswith("| ")}
    assert rows["chats"].rstrip(" |").endswith("8") and rows["prefs"].rstrip(" |").endswith("4")
    assert "- 15 records read, 12 kept, 3 quarantined" in card
