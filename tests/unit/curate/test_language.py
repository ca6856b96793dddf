from curate_helpers import run_steps

from tunewright.core.records import to_conversation
from tunewright.curate.filters.language import LanguageFilter, identify
from tunewright.curate.pipeline import Quarantine


def test_identify():
    assert identify("The nightly job for the ledger failed. What should I do first?")[0] == "en"
    assert identify("La table est obsolète, que dois-je faire maintenant ?")[0] == "fr"
    lang, score = identify("Die Tabelle ist veraltet. Was soll ich tun?")
    assert lang == "de" and 0 < score <= 1


def test_language_filter_keeps_listed_languages_above_score():
    en = to_conversation({"prompt": "Is the table stale?", "response": "Check the freshness monitor first."}, "s", "en")
    fr = to_conversation(
        {"prompt": "La table est-elle obsolète ?", "response": "Vérifiez d'abord le moniteur."}, "s", "fr"
    )
    q = Quarantine()
    kept = run_steps([en, fr], [LanguageFilter(["en"], 0.5)], q)
    assert [r.id for r in kept] == ["en"]
    assert kept[0].meta["language"] == "en"
    assert q.entries["language"][0]["reason"].startswith("language fr (")
    assert run_steps([en], [LanguageFilter(["en"], 1.01)], Quarantine()) == []
