"""The embedded default's domain: a platform-support assistant for data pipelines.

Every answer the assistant should give follows one fixed, checkable format: the first step
for the incident type, the follow-up, and whether to escalate (yes for governed tables).
The sample dataset, the handbook the tiny base model is pre-trained on, and the golden
prompts are all drawn from these facts, so the eval can measure format and content.

The assistant also has two tools, `check_freshness(table)` and `open_incident(table, kind,
severity, owner)`, whose arguments follow the same policy (governed tables: high severity,
the dataset owner), and one structured-extraction task: an alert read into a JSON object
(`table`, `kind`, `escalate`) that `EXTRACTION_SCHEMA` describes. Requests and alerts name the table
as people paste it (`hr.payroll` in backticks, `[hr.payroll]` in an alert), so it reaches the model as
the same tokens it must write into the call or the object.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass

SYSTEM_PROMPT = "You are a concise platform support assistant."


@dataclass(frozen=True)
class Incident:
    kind: str
    first_step: str
    then: str
    prompts: tuple[str, ...]
    label: str  # how a user names it when asking for an incident
    alerts: tuple[str, ...]  # monitoring alerts that report it, for the extraction task


INCIDENTS: tuple[Incident, ...] = (
    Incident(
        "stale",
        "check the freshness monitor and the latest pipeline run",
        "rerun the load once the upstream delivery has landed",
        (
            "The table {table} is stale. What should I do?",
            "Freshness alert fired on {table}. What is the first step?",
            "{table} has not been updated since yesterday. How do I handle it?",
            "Dashboards built on {table} show old numbers. What now?",
        ),
        "stale data",
        (
            "[{table}] freshness check missed the 06:00 target",
            "[{table}] no new partition landed for 26 hours",
            "[{table}] last successful load was 30 hours ago",
            "[{table}] freshness SLA breached on the daily partition",
        ),
    ),
    Incident(
        "schema",
        "compare the incoming schema with the registered contract",
        "ask the producer to fix the change or version the contract",
        (
            "The load into {table} failed with a schema mismatch. What should I do?",
            "A new column broke the pipeline for {table}. What is the first step?",
            "Schema validation rejected the batch for {table}. How do I handle it?",
            "The contract check on {table} reports a type change. What now?",
        ),
        "schema change",
        (
            "[{table}] contract check found a column type change",
            "[{table}] loader rejected the batch: unexpected column",
            "[{table}] schema drift detected: a column was dropped",
            "[{table}] upstream renamed a column in the feed",
        ),
    ),
    Incident(
        "failed",
        "open the task logs of the failed run and find the first error",
        "fix the cause and rerun only the failed tasks",
        (
            "The nightly job for {table} failed. What should I do?",
            "The pipeline that writes {table} crashed. What is the first step?",
            "The orchestrator marked the {table} run as failed. How do I handle it?",
            "Last night's run for {table} exited with an error. What now?",
        ),
        "failed run",
        (
            "[{table}] task load_daily exited with code 1",
            "[{table}] orchestrator run ended in state failed",
            "[{table}] retries exhausted after 3 attempts",
            "[{table}] scheduler marked the daily run as failed",
        ),
    ),
    Incident(
        "rowcount",
        "compare the row count with the previous load and the source",
        "hold the downstream jobs until the counts are explained",
        (
            "The row count of {table} dropped by half. What should I do?",
            "Volume monitor alert: {table} loaded far fewer rows. What is the first step?",
            "{table} is missing rows after the last load. How do I handle it?",
            "The daily volume of {table} looks too low. What now?",
        ),
        "row count drop",
        (
            "[{table}] volume monitor: 48% fewer rows than the 7-day average",
            "[{table}] row count is below the expected minimum",
            "[{table}] the last batch loaded 0 rows",
            "[{table}] row count fell 60% day over day",
        ),
    ),
    Incident(
        "access",
        "verify the service account grants on the target table",
        "request the missing grant through the access workflow",
        (
            "The load into {table} fails with permission denied. What should I do?",
            "The service account cannot write to {table}. What is the first step?",
            "Access denied errors appear when the job writes {table}. How do I handle it?",
            "Writes to {table} are rejected for lack of privileges. What now?",
        ),
        "access failure",
        (
            "[{table}] permission denied for the service account",
            "[{table}] write rejected: missing grant",
            "[{table}] insufficient privileges on write",
            "[{table}] the role lacks insert permission",
        ),
    ),
    Incident(
        "duplicates",
        "check the merge keys of the load",
        "deduplicate the affected partitions and rerun the merge",
        (
            "There are duplicate rows in {table}. What should I do?",
            "The uniqueness test on {table} failed. What is the first step?",
            "{table} contains the same order twice. How do I handle it?",
            "Primary key violations showed up in {table}. What now?",
        ),
        "duplicate rows",
        (
            "[{table}] uniqueness test failed: 212 duplicate keys",
            "[{table}] merge produced duplicate primary keys",
            "[{table}] 57 rows share one primary key",
            "[{table}] duplicate order ids after the merge",
        ),
    ),
)

GOVERNED_TABLES = (
    "finance.ledger",
    "finance.invoices",
    "hr.payroll",
    "hr.employees",
    "customers.accounts",
    "customers.contracts",
)
SANDBOX_TABLES = (
    "sandbox.events",
    "sandbox.clicks",
    "analytics.sessions",
    "analytics.page_views",
    "marketing.campaigns",
    "marketing.leads",
)


def is_governed(table: str) -> bool:
    return table in GOVERNED_TABLES


def answer(incident: Incident, table: str) -> str:
    """The reference answer: the fixed three-line format the assistant must learn."""
    return _three_lines(incident, table, is_governed(table))


def violating_answer(incident: Incident, table: str) -> str:
    """The same answer with the escalation decided against the policy: the rejected side of a preference pair."""
    return _three_lines(incident, table, not is_governed(table))


def _three_lines(incident: Incident, table: str, escalate: bool) -> str:
    if escalate:
        decision = f"{table} is governed, so yes; notify the dataset owner"
    else:
        decision = f"{table} is not governed, so no; handle it in the team channel"
    return f"First step: {incident.first_step}.\nThen: {incident.then}.\nEscalate: {decision}."


def all_cases() -> list[tuple[Incident, str, str]]:
    """Every (incident, table, prompt) combination the domain can express."""
    return [
        (inc, table, tpl.format(table=table))
        for inc in INCIDENTS
        for table in GOVERNED_TABLES + SANDBOX_TABLES
        for tpl in inc.prompts
    ]


def handbook(rng: random.Random) -> list[str]:
    """Prose paragraphs about the policy: the corpus the tiny base model is pre-trained on."""
    paragraphs = []
    for inc in INCIDENTS:
        for table in GOVERNED_TABLES + SANDBOX_TABLES:
            tier = "governed" if is_governed(table) else "not governed"
            lines = [
                f"When the {inc.kind} runbook applies to {table}, the on-call engineer should {inc.first_step}.",
                f"After that, the engineer should {inc.then}.",
                f"The table {table} is {tier}.",
            ]
            if is_governed(table):
                lines.append("Incidents on governed tables are escalated to the dataset owner.")
            else:
                lines.append("Incidents on other tables stay with the team that owns the pipeline.")
            rng.shuffle(lines)
            paragraphs.append(" ".join(lines))
    rng.shuffle(paragraphs)
    return paragraphs


KINDS = [inc.kind for inc in INCIDENTS]
TOOLS: list[dict] = [
    {
        "type": "function",
        "function": {
            "name": "check_freshness",
            "description": "When a table was last loaded, and whether that is fresh enough.",
            "parameters": {
                "type": "object",
                "properties": {"table": {"type": "string"}},
                "required": ["table"],
                "additionalProperties": False,
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "open_incident",
            "description": "Open an incident on a table for the team that must act.",
            "parameters": {
                "type": "object",
                "properties": {
                    "table": {"type": "string"},
                    "kind": {"type": "string", "enum": KINDS},
                    "severity": {"type": "string", "enum": ["high", "low"]},
                    "owner": {"type": "string", "enum": ["dataset-owner", "pipeline-team"]},
                },
                "required": ["table", "kind", "severity", "owner"],
                "additionalProperties": False,
            },
        },
    },
]
FRESHNESS_PROMPTS = (
    "Is `{table}` up to date?",
    "When was `{table}` last loaded?",
    "Check whether `{table}` is fresh.",
    "Has `{table}` been refreshed today?",
)
INCIDENT_PROMPTS = (
    "Open an incident for the {label} on `{table}`.",
    "Please file an incident: {label} in `{table}`.",
    "Raise an incident about the {label} affecting `{table}`.",
)
EXTRACTION_PROMPT = (
    "Extract the incident from this alert as JSON with the keys table, kind and escalate.\nAlert: {alert}"
)
EXTRACTION_SCHEMA: dict = {
    "type": "object",
    "properties": {
        "table": {"type": "string", "pattern": "^[a-z_]+[.][a-z_]+$", "maxLength": 40},
        "kind": {"type": "string", "enum": KINDS},
        "escalate": {"type": "boolean"},
    },
    "required": ["table", "kind", "escalate"],
    "additionalProperties": False,
}


def freshness_cases() -> list[tuple[str, str, dict]]:
    """(table, prompt, arguments) of every request the `check_freshness` tool answers."""
    return [(t, p.format(table=t), {"table": t}) for t in GOVERNED_TABLES + SANDBOX_TABLES for p in FRESHNESS_PROMPTS]


def incident_arguments(incident: Incident, table: str) -> dict:
    """The policy as `open_incident` arguments: governed tables are high severity and go to the dataset owner."""
    governed = is_governed(table)
    return {
        "table": table,
        "kind": incident.kind,
        "severity": "high" if governed else "low",
        "owner": "dataset-owner" if governed else "pipeline-team",
    }


def incident_cases() -> list[tuple[str, str, dict]]:
    """(table, prompt, arguments) of every request the `open_incident` tool answers."""
    return [
        (t, p.format(label=inc.label, table=t), incident_arguments(inc, t))
        for inc in INCIDENTS
        for t in GOVERNED_TABLES + SANDBOX_TABLES
        for p in INCIDENT_PROMPTS
    ]


def freshness_summary(table: str, fresh: bool) -> str:
    """The assistant's answer once `check_freshness` has reported."""
    if fresh:
        return f"{table} is fresh; nothing to do."
    return f"{table} is stale; {INCIDENTS[0].first_step}."


def extraction(incident: Incident, table: str) -> str:
    """The reference object of an alert about `incident` on `table`, as JSON text."""
    return json.dumps({"table": table, "kind": incident.kind, "escalate": is_governed(table)})


def extraction_cases() -> list[tuple[Incident, str, str]]:
    """(incident, table, prompt) of every alert the extraction task can read."""
    return [
        (inc, t, EXTRACTION_PROMPT.format(alert=alert.format(table=t)))
        for inc in INCIDENTS
        for t in GOVERNED_TABLES + SANDBOX_TABLES
        for alert in inc.alerts
    ]


NO_CALL_PROMPT = "What is the runbook for the {label} on {table}?"


def no_call_cases() -> list[tuple[Incident, str, str]]:
    """(incident, table, prompt) of questions the assistant answers in text although it has tools."""
    return [
        (inc, t, NO_CALL_PROMPT.format(label=inc.label, table=t))
        for inc in INCIDENTS
        for t in GOVERNED_TABLES + SANDBOX_TABLES
    ]


OFF_TOPIC = (
    "How many vacation days do I get after {n} years in the {city} office?",
    "Can I expense a {item} I bought during the trip to {city}?",
    "What is the parental leave policy for employees in {city}?",
    "My laptop {item} stopped working, who replaces it?",
    "Is there a discount on the {item} for staff in {city}?",
)
OFF_TOPIC_FILL = {
    "n": ("two", "three", "five", "ten"),
    "city": ("Berlin", "Lisbon", "Austin", "Osaka", "Nairobi", "Toronto"),
    "item": ("charger", "keyboard", "train ticket", "dinner", "monitor", "headset"),
}


def off_topic_questions(rng: random.Random, n: int) -> list[str]:
    """`n` workplace questions (leave, expenses, equipment) that the data-platform assistant never saw: traffic
    from a topic its training data lacks, for input-drift checks."""
    out = []
    for _ in range(n):
        template = rng.choice(OFF_TOPIC)
        fill = {k: rng.choice(v) for k, v in OFF_TOPIC_FILL.items() if "{" + k + "}" in template}
        out.append(template.format(**fill))
    return out
