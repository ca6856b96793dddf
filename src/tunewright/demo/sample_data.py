"""Write the embedded default's raw data: realistic, licensed, and deliberately dirty.

Two raw sources in the two shapes users bring (the seed's prompt/response lines and chat
`messages`), a handbook corpus for pre-training the tiny base model, and golden eval
prompts held out from both. The sources carry the problems curation must catch: exact and
whitespace/case duplicates, near duplicates, empty and malformed lines, records of the
wrong shape, personal data, and copies of eval prompts.

Two more sources teach the structured behaviours: tool use (`check_freshness` and `open_incident` calls, some
followed by the tool's result and the answer, questions answered in text although tools are offered; in
OpenAI's shape and in ShareGPT/Hermes' `<tool_call>` form, with calls that curation must quarantine) and alert
extraction (an alert read into a JSON object). Each holds out cases for the golden prompts, which carry the
`source` they mirror so eval tasks can pick their slice.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from tunewright.core.io import write_text
from tunewright.core.tools import call_text
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
    "ops_tool_calls": {"file": "ops_tool_calls.jsonl", "license": "Apache-2.0"},
    "alert_extractions": {"file": "alert_extractions.jsonl", "license": "CC-BY-4.0"},
}
TOOL_SYSTEM_PROMPT = "You are a concise platform support assistant. Use the tools to check tables and open incidents."
FRESHNESS_RECORDS, INCIDENT_RECORDS, NO_CALL_RECORDS, EXTRACTION_RECORDS = 40, 64, 24, 240
GOLDEN_STRUCTURED = 2  # held-out cases per structured kind (freshness, incident, no call, extraction)


def _conv(prompt: str, reply: str) -> list[dict]:
    return [
        {"role": "system", "content": domain.SYSTEM_PROMPT},
        {"role": "user", "content": prompt},
        {"role": "assistant", "content": reply},
    ]


def _call(name: str, arguments: dict, call_id: str) -> dict:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": json.dumps(arguments)}}


def _tool_conv(prompt: str, reply: str | tuple[str, dict], call_id: str = "call_0") -> list[dict]:
    """A tool-use conversation: the assistant answers `reply` text, or makes the (name, arguments) call."""
    head = [{"role": "system", "content": TOOL_SYSTEM_PROMPT}, {"role": "user", "content": prompt}]
    if isinstance(reply, str):
        return [*head, {"role": "assistant", "content": reply}]
    return [*head, {"role": "assistant", "content": "", "tool_calls": [_call(*reply, call_id)]}]


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
        _dumps({"id": f"G{i:03d}", "source": "runbook_chats", "messages": _conv(p, domain.answer(inc, t))})
        for i, (inc, t, p) in enumerate(golden)
    ]
    tool_lines, extraction_lines, structured_golden = _structured_lines(seed)
    golden_lines += structured_golden
    paths = {
        "support_tickets": raw_dir / SOURCES["support_tickets"]["file"],
        "runbook_chats": raw_dir / SOURCES["runbook_chats"]["file"],
        "handbook": raw_dir / SOURCES["handbook"]["file"],
        "escalation_preferences": raw_dir / SOURCES["escalation_preferences"]["file"],
        "ops_tool_calls": raw_dir / SOURCES["ops_tool_calls"]["file"],
        "alert_extractions": raw_dir / SOURCES["alert_extractions"]["file"],
        "golden": raw_dir / "eval" / "golden.jsonl",
    }
    write_text(paths["ops_tool_calls"], "\n".join(tool_lines) + "\n")
    write_text(paths["alert_extractions"], "\n".join(extraction_lines) + "\n")
    write_text(paths["escalation_preferences"], "\n".join(_preference_lines(rest, seed)) + "\n")
    write_text(paths["support_tickets"], "\n".join(ticket_lines) + "\n")
    write_text(paths["runbook_chats"], "\n".join(chat_lines) + "\n")
    write_text(paths["handbook"], "\n".join(handbook) + "\n")
    write_text(paths["golden"], "\n".join(golden_lines) + "\n")
    write_text(raw_dir / "SOURCES.md", _sources_note())
    return paths


def _structured_lines(seed: int) -> tuple[list[str], list[str], list[str]]:
    """The tool-use source, the extraction source and their held-out golden items (each its own random stream,
    so the other sources stay as they were)."""
    rng = random.Random(seed + 2)
    freshness, incidents = domain.freshness_cases(), domain.incident_cases()
    no_call, alerts = domain.no_call_cases(), domain.extraction_cases()
    for cases in (freshness, incidents, no_call, alerts):
        rng.shuffle(cases)
    held = GOLDEN_STRUCTURED
    golden = [
        *(("ops_tool_calls", _tool_conv(p, ("check_freshness", a))) for _, p, a in freshness[:held]),
        *(("ops_tool_calls", _tool_conv(p, ("open_incident", a))) for _, p, a in incidents[:held]),
        *(("ops_tool_calls", _tool_conv(p, domain.answer(inc, t))) for inc, t, p in no_call[:held]),
        *(("alert_extractions", _chat(p, domain.extraction(inc, t))) for inc, t, p in alerts[:held]),
    ]
    golden_lines = [
        _dumps(
            {
                "id": f"GS{i:02d}",
                "source": source,
                **({"tools": domain.TOOLS} if "tool" in source else {}),
                "messages": messages,
            }
        )
        for i, (source, messages) in enumerate(golden)
    ]
    records = []
    for i, (t, p, a) in enumerate(freshness[held : held + FRESHNESS_RECORDS]):
        messages = _tool_conv(p, ("check_freshness", a), f"call_f{i}")
        if i % 3 == 0:  # the tool's result and the answer it leads to
            fresh = rng.random() < 0.5
            result = {
                "table": t,
                "fresh": fresh,
                "last_loaded": f"2026-11-{rng.randint(10, 30)}T0{rng.randint(1, 6)}:00Z",
            }
            messages += [
                {"role": "tool", "tool_call_id": f"call_f{i}", "content": json.dumps(result)},
                {"role": "assistant", "content": domain.freshness_summary(t, fresh)},
            ]
        records.append(messages)
    records += [
        _tool_conv(p, ("open_incident", a), f"call_i{i}")
        for i, (_, p, a) in enumerate(incidents[held : held + INCIDENT_RECORDS])
    ]
    records += [_tool_conv(p, domain.answer(inc, t)) for inc, t, p in no_call[held : held + NO_CALL_RECORDS]]
    rng.shuffle(records)
    lines = []
    for i, messages in enumerate(records):
        if i % 4 == 3:  # the same record as ShareGPT/Hermes write it
            lines.append(_dumps({"id": f"O{i:04d}", "conversations": _hermes(messages)}))
        else:
            lines.append(_dumps({"id": f"O{i:04d}", "tools": domain.TOOLS, "messages": messages}))
    lines += _bad_tool_lines(freshness[-1], incidents[-1])
    rng.shuffle(lines)
    extraction = [
        _dumps({"id": f"X{i:04d}", "messages": _chat(p, domain.extraction(inc, t))})
        for i, (inc, t, p) in enumerate(alerts[held : held + EXTRACTION_RECORDS])
    ]
    return lines, extraction, golden_lines


def _chat(prompt: str, reply: str) -> list[dict]:
    return [{"role": "user", "content": prompt}, {"role": "assistant", "content": reply}]


def _hermes(messages: list[dict]) -> list[dict]:
    """A tool-use conversation in ShareGPT/Hermes form: tools in the system prompt, calls and results as text."""
    roles = {"system": "system", "user": "human", "assistant": "gpt", "tool": "tool"}
    turns = []
    for m in messages:
        value = m["content"]
        if m["role"] == "system":
            listing = "\n".join(_dumps(t) for t in domain.TOOLS)
            value = f"{value}\n<tools>\n{listing}\n</tools>"
        elif m.get("tool_calls"):
            calls = [call_text(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in m["tool_calls"]]
            value = "\n".join(calls)
        elif m["role"] == "tool":
            value = f"<tool_response>\n{value}\n</tool_response>"
        turns.append({"from": roles[m["role"]], "value": value})
    return turns


def _bad_tool_lines(freshness: tuple[str, str, dict], incident: tuple[str, str, dict]) -> list[str]:
    """Tool-use records curation must quarantine (an undeclared tool, arguments that are not JSON or break the
    tool's schema), and one whose tool result holds personal data to redact."""
    t, p, a = freshness
    _, ip, ia = incident
    broken = _tool_conv(p, ("check_freshness", a), "call_b1")
    broken[-1]["tool_calls"][0]["function"]["arguments"] = '{"table": "' + t
    leaked = [
        *_tool_conv(p, ("check_freshness", a), "call_b4"),
        {
            "role": "tool",
            "tool_call_id": "call_b4",
            "content": json.dumps({"table": t, "fresh": True, "loaded_by": "jane.doe@example.com"}),
        },
        {"role": "assistant", "content": domain.freshness_summary(t, True)},
    ]
    return [
        _dumps(
            {"id": "O8001", "tools": domain.TOOLS, "messages": _tool_conv(p, ("page_oncall", {"table": t}), "call_b0")}
        ),
        _dumps({"id": "O8002", "tools": domain.TOOLS, "messages": broken}),
        _dumps(
            {
                "id": "O8003",
                "tools": domain.TOOLS,
                "messages": _tool_conv(ip, ("open_incident", {**ia, "severity": "urgent"}), "call_b2"),
            }
        ),
        _dumps(
            {
                "id": "O8004",
                "tools": domain.TOOLS,
                "messages": _tool_conv(ip, ("open_incident", {"table": ia["table"]}), "call_b3"),
            }
        ),
        _dumps({"id": "O8005", "tools": domain.TOOLS, "messages": leaked}),
    ]


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
