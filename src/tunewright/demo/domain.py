"""The embedded default's domain: a platform-support assistant for data pipelines.

Every answer the assistant should give follows one fixed, checkable format: the first step
for the incident type, the follow-up, and whether to escalate (yes for governed tables).
The sample dataset, the handbook the tiny base model is pre-trained on, and the golden
prompts are all drawn from these facts, so the eval can measure format and content.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

SYSTEM_PROMPT = "You are a concise platform support assistant."


@dataclass(frozen=True)
class Incident:
    kind: str
    first_step: str
    then: str
    prompts: tuple[str, ...]


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
