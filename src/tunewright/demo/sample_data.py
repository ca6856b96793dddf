"""Write the embedded default's raw data: realistic, licensed, and deliberately dirty.

Two raw sources in the two shapes users bring (the seed's prompt/response lines and chat
`messages`), a handbook corpus for pre-training the tiny base model, and golden eval
prompts held out from both. The sources carry the problems curation must catch: exact and
whitespace/case duplicates, near duplicates, empty and malformed lines, records of the
wrong shape, personal data, and copies of eval prompts.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from tunewright.core.io import write_text
from tunewright.demo import domain

GOLDEN_COUNT = 12
PII_SUFFIXES = (
    " You can reach me at jane.doe@example.com.",
    " Call me on +1 415 555 0134 if it is urgent.",
    " My email is ops.lead@example.org and my phone is 020 7946 0958.",
)
PREFERENCE_PAIRS = 120
SOURCES = {
    "support_tickets": {"file": "support_tickets.jsonl", "license": "CC-BY-4.0"},
    "runbook_chats": {"file": "runbook_chats.jsonl", "license": "Apache-2.0"},
    "handbook": {"file": "handbook.jsonl", "license": "CC-BY-4.0"},
    "escalation_preferences": {"file": "escalation_preferences.jsonl", "license": "Apache-2.0"},
}


def _conv(prompt: str, reply: str) -> list[dict]:
    return [
        {"role": "system", "content": domain.SYSTEM_PROMPT},
        {"role": "user", "content": prompt},
        {"role": "assistant", "content": reply},
    ]


def _dumps(obj: object) -> str:
    return json.dumps(obj, ensure_ascii=False)


def write_sample_data(raw_dir: Path, seed: int = 7) -> dict[str, Path]:
    """Write the raw sources and golden prompts under `raw_dir`; returns their paths."""
    rng = random.Random(seed)
    cases = domain.all_cases()
    rng.shuffle(cases)
    golden, rest = cases[:GOLDEN_COUNT], cases[GOLDEN_COUNT:]
    n_tickets = int(len(rest) * 0.6)
    tickets, chats = rest[:n_tickets], rest[n_tickets:]

    ticket_lines = [
        _dumps({"id": f"T{i:04d}", "prompt": p, "response": domain.answer(inc, t)})
        for i, (inc, t, p) in enumerate(tickets)
    ]
    dirty = [
        *rng.sample(ticket_lines, 8),  # exact duplicates
        *(
            _dumps({"id": f"T9{i:03d}", "prompt": "  " + p.upper() + " ", "response": domain.answer(inc, t)})
            for i, (inc, t, p) in enumerate(rng.sample(tickets, 4))
        ),  # case / whitespace duplicates
        "",
        "   ",
        "",
        '{"id": "T8001", "prompt": "The load into finance.ledger failed with',
        '{"id": "T8002", "prompt": "Why?", "response": }',
        "not json at all",
        _dumps({"id": "T8101", "prompt": "The table sandbox.events is stale. What should I do?", "response": ""}),
        _dumps({"id": "T8102", "prompt": "   ", "response": "First step: wait."}),
        *(
            _dumps(
                {
                    "id": f"T82{i:02d}",
                    "prompt": p + PII_SUFFIXES[i % len(PII_SUFFIXES)],
                    "response": domain.answer(inc, t),
                }
            )
            for i, (inc, t, p) in enumerate(rng.sample(tickets, 3))
        ),
        *(
            _dumps({"id": f"T83{i:02d}", "prompt": p, "response": domain.answer(inc, t)})
            for i, (inc, t, p) in enumerate(golden[:4])
        ),  # eval contamination
        _dumps(
            {
                "id": "T8601",
                "prompt": "La table finance.ledger est obsolète. Que dois-je faire ?",
                "response": "Vérifiez d'abord le moniteur de fraîcheur et la dernière exécution du pipeline.",
            }
        ),
        _dumps(
            {
                "id": "T8602",
                "prompt": "Die Tabelle hr.payroll ist veraltet. Was soll ich tun?",
                "response": "Prüfen Sie zuerst den Frische-Monitor und den letzten Lauf der Pipeline.",
            }
        ),
        _dumps(
            {"id": "T8401", "prompt": "What is the policy?", "response": "Lorem ipsum dolor sit amet, consectetur."}
        ),
        _dumps({"id": "T8402", "prompt": "Any docs?", "response": "see\nsee\nsee\nsee\nsee\nsee"}),
        _dumps({"id": "T8403", "prompt": "Links?", "response": "https://wiki.example.com/runbooks/stale-tables"}),
        *(
            _dumps(
                {
                    "id": f"T85{i:02d}",
                    "prompt": p + " It\u00e2\u20ac\u2122s urgent.\u200b",
                    "response": domain.answer(inc, t).replace(". ", ".  "),
                }
            )
            for i, (inc, t, p) in enumerate(rng.sample(tickets, 2))
        ),  # mojibake, zero-width and doubled spaces for the cleaner
    ]
    ticket_lines += dirty
    rng.shuffle(ticket_lines)

    chat_lines = [
        _dumps({"id": f"C{i:04d}", "messages": _conv(p, domain.answer(inc, t))}) for i, (inc, t, p) in enumerate(chats)
    ]
    chat_lines += [
        _dumps({"id": "C8001", "messages": [{"role": "user", "content": "Is the ledger stale?"}]}),
        _dumps({"id": "C8002", "messages": [{"role": "user", "content": 42}, {"role": "assistant", "content": "ok"}]}),
        *(
            _dumps({"id": f"C81{i:02d}", "messages": _conv(p.replace("What", "So what"), domain.answer(inc, t))})
            for i, (inc, t, p) in enumerate(rng.sample(chats, 3))
        ),  # near duplicates: survive exact dedup, for fuzzy dedup to find
        *(
            _dumps({"id": f"C82{i:02d}", "messages": _conv(p + PII_SUFFIXES[i], domain.answer(inc, t))})
            for i, (inc, t, p) in enumerate(rng.sample(chats, 2))
        ),
    ]
    rng.shuffle(chat_lines)

    handbook = [_dumps({"id": f"H{i:04d}", "text": para}) for i, para in enumerate(domain.handbook(rng))]
    golden_lines = [
        _dumps({"id": f"G{i:03d}", "messages": _conv(p, domain.answer(inc, t))}) for i, (inc, t, p) in enumerate(golden)
    ]
    paths = {
        "support_tickets": raw_dir / SOURCES["support_tickets"]["file"],
        "runbook_chats": raw_dir / SOURCES["runbook_chats"]["file"],
        "handbook": raw_dir / SOURCES["handbook"]["file"],
        "escalation_preferences": raw_dir / SOURCES["escalation_preferences"]["file"],
        "golden": raw_dir / "eval" / "golden.jsonl",
    }
    write_text(paths["escalation_preferences"], "\n".join(_preference_lines(rest, seed)) + "\n")
    write_text(paths["support_tickets"], "\n".join(ticket_lines) + "\n")
    write_text(paths["runbook_chats"], "\n".join(chat_lines) + "\n")
    write_text(paths["handbook"], "\n".join(handbook) + "\n")
    write_text(paths["golden"], "\n".join(golden_lines) + "\n")
    write_text(raw_dir / "SOURCES.md", _sources_note())
    return paths


def _preference_lines(cases: list[tuple[domain.Incident, str, str]], seed: int) -> list[str]:
    """Preference pairs: the answer that follows the escalation policy (chosen) against the same answer
    escalating the wrong way (rejected), in the three shapes curation reads, plus pairs it must quarantine."""
    rng = random.Random(seed + 1)  # its own stream: the other sources stay as they were
    picked = rng.sample(cases, min(PREFERENCE_PAIRS, len(cases)))
    lines = []
    for i, (inc, t, p) in enumerate(picked):
        chosen, rejected = domain.answer(inc, t), domain.violating_answer(inc, t)
        if i % 3 == 0:  # chat form: message lists
            pair = {
                "prompt": [{"role": "system", "content": domain.SYSTEM_PROMPT}, {"role": "user", "content": p}],
                "chosen": [{"role": "assistant", "content": chosen}],
                "rejected": [{"role": "assistant", "content": rejected}],
            }
        elif i % 3 == 1:  # TRL's implicit prompt: two whole conversations sharing it
            pair = {"chosen": _conv(p, chosen), "rejected": _conv(p, rejected)}
        else:
            pair = {"prompt": p, "chosen": chosen, "rejected": rejected}
        lines.append(_dumps({"id": f"P{i:04d}", **pair}))
    inc, t, p = picked[0]
    lines += [
        _dumps({"id": "P8001", "prompt": p, "chosen": domain.answer(inc, t), "rejected": domain.answer(inc, t)}),
        _dumps({"id": "P8002", "chosen": "First step: wait.", "rejected": "Escalate: no."}),
        _dumps({"id": "P8003", "prompt": p, "chosen": "", "rejected": domain.violating_answer(inc, t)}),
    ]  # identical answers, no prompt, an empty answer: quarantined
    rng.shuffle(lines)
    return lines


def _sources_note() -> str:
    rows = "\n".join(f"| {name} | {s['file']} | {s['license']} |" for name, s in SOURCES.items())
    return (
        "# Raw sources\n\n"
        "Synthetic platform-support data generated by tunewright's embedded default.\n\n"
        "| source | file | license |\n|---|---|---|\n"
        f"{rows}\n| golden eval prompts | eval/golden.jsonl | CC-BY-4.0 (eval only, never trained on) |\n"
    )
