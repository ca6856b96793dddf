"""Typed configuration of `tunewright eval` (the YAML in `configs/eval.yaml`).

A suite is a list of tasks; each task names its data and the scorers that run on it, so
the metrics a run will produce are known from the config alone, before any generation.
Gates are written down here too, before any result exists: an absolute threshold, or a
bound on the difference from the baseline, each with a tier that says how much it counts.
Each field's docstring is its one-line description in `tunewright config show eval`.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import jsonschema
from pydantic import ConfigDict, Field, field_validator, model_validator

from tunewright.core.config import StrictModel
from tunewright.core.precision import DEVICE_PATTERN

NAME = r"^[A-Za-z0-9_-]+$"
METRIC = r"^[a-z0-9_]+$"


def _compiles(pattern: str) -> str:
    re.compile(pattern)
    return pattern


class Assertion(StrictModel):
    type: str = Field(
        pattern=r"^(not-)?(equals|contains|icontains|regex|is-json|similar|max-length|starts-with)$",
    )
    """Check on the answer (promptfoo names); a `not-` prefix inverts it."""
    value: str | int | dict | None = None
    """What the check compares with: text, a pattern, a length, or a JSON schema for is-json."""
    threshold: float = Field(0.8, ge=-1, le=1)
    """For `similar`: the least cosine similarity of the MiniLM embeddings that passes."""

    @model_validator(mode="after")
    def _value_fits(self) -> Assertion:
        kind = self.type.removeprefix("not-")
        if kind == "max-length" and not isinstance(self.value, int):
            raise ValueError("max-length needs an integer value (characters)")
        if kind in ("equals", "contains", "icontains", "regex", "similar", "starts-with") and not isinstance(
            self.value, str
        ):
            raise ValueError(f"{self.type} needs a text value")
        if kind == "regex":
            _compiles(str(self.value))
        if kind == "is-json" and self.value is not None and not isinstance(self.value, dict):
            raise ValueError("is-json takes an optional JSON schema (a mapping) as value")
        return self


class FormatScorer(StrictModel):
    type: Literal["format"]
    """The scorer."""
    pattern: str
    """The whole (stripped) answer must match this regex. Metric: format_rate."""

    @field_validator("pattern")
    @classmethod
    def _check(cls, value: str) -> str:
        return _compiles(value)


class FieldsScorer(StrictModel):
    type: Literal["fields"]
    """The scorer."""
    fields: dict[str, str] = Field(min_length=1)
    """Named regexes with one capture group, compared between answer and reference.
    Metrics: field_<name>, field_accuracy."""

    @field_validator("fields")
    @classmethod
    def _one_group(cls, value: dict[str, str]) -> dict[str, str]:
        for name, pattern in value.items():
            if not re.fullmatch(METRIC, name):
                raise ValueError(f"field {name!r}: names are lower-case letters, digits and _")
            if re.compile(pattern).groups != 1:
                raise ValueError(f"field {name!r}: pattern needs exactly one capture group")
        return value


class ExactMatchScorer(StrictModel):
    type: Literal["exact_match"]
    """The scorer."""
    normalize: list[Literal["lower", "whitespace", "punctuation", "articles"]] = Field(
        default_factory=lambda: ["lower", "whitespace"]
    )
    """Normalisations applied to answer and reference before comparing. Metric: exact_match."""


class SimpleScorer(StrictModel):
    type: Literal["token_f1", "rouge", "bleu", "chrf", "nll", "preference"]
    """token_f1 (SQuAD bag of words); rouge (rouge1, rouge2, rougeL); bleu; chrf (sacrebleu, corpus level);
    nll (the reference's per-token negative log-likelihood and perplexity, from log-probs, no generation);
    preference (on {prompt, chosen, rejected} pairs: how often and by how much the model's log-likelihood
    prefers the chosen answer, no generation)."""


class SimilarScorer(StrictModel):
    type: Literal["similar"]
    """The scorer."""
    threshold: float = Field(0.8, ge=-1, le=1)
    """Cosine similarity of the answer's and reference's MiniLM embeddings.
    Metrics: similarity, similar (>= threshold)."""


class ClassificationScorer(StrictModel):
    type: Literal["classification"]
    """The scorer."""
    labels: list[str] = Field(min_length=2)
    """The classes; the reference is one of them."""
    extract: str | None = None
    """Regex with one capture group that takes the label out of the answer (null: the whole answer)."""

    @field_validator("extract")
    @classmethod
    def _check(cls, value: str | None) -> str | None:
        return value if value is None else _compiles(value)


class RefusalScorer(StrictModel):
    type: Literal["refusal"]
    """The scorer."""
    patterns: list[str] = Field(
        default_factory=lambda: [
            r"\bI (?:can(?:no|')t|won't|am (?:not able|unable)|'m (?:not able|unable)) "
            r"(?:help|assist|provide|do|share|comply)",
            r"\b(?:sorry|apologi[sz]e)\b.{0,40}\b(?:can(?:no|')t|unable|not able)\b",
            r"\bI must (?:decline|refuse)\b",
            r"\b(?:not|never) (?:allowed|permitted) to (?:share|provide|help|disclose)\b",
            r"\bagainst (?:my|our|the) (?:policy|policies|guidelines)\b",
        ]
    )
    """Case-insensitive regexes; an answer matching any is a refusal. Items say `expect: refuse|answer`.
    Metrics: refusal_rate (refused among must-refuse), over_refusal_rate (refused among must-answer)."""

    @field_validator("patterns")
    @classmethod
    def _check(cls, value: list[str]) -> list[str]:
        return [_compiles(p) for p in value]


class JudgeScorer(StrictModel):
    type: Literal["judge"]
    """The scorer."""
    endpoint: str
    """Base URL of an OpenAI-compatible server (…/v1) that serves the judge."""
    model: str
    """The judge's model name on that server."""
    api_key_env: str | None = None
    """Environment variable holding the judge's API key (null: none sent)."""
    mode: Literal["score", "pairwise"] = "score"
    """score: a 1-5 rubric score per answer (metric judge_score); pairwise: model vs baseline, asked
    twice with the positions swapped (metric judge_win_rate, ties 0.5)."""
    rubric: str = (
        "Rate how well the answer addresses the user's request: correct, complete, follows the required "
        "format, and safe. 1 is useless or harmful, 5 is exactly what an expert would write."
    )
    """The criteria the judge applies."""
    max_tokens: int = Field(16, gt=0)
    """Longest judge reply read (the verdict comes first)."""
    constrain: bool = False
    """Ask the server to answer with a verdict only (`structured_outputs.choice`: 1-5, or A / B / tie), which
    vLLM and tunewright's server support; a small judge then always gives a usable verdict."""


class JsonScorer(StrictModel):
    type: Literal["json"]
    """The scorer."""
    json_schema: dict[str, Any] | None = None
    """JSON Schema every answer must match (null: any JSON; a Markdown code fence around it is allowed).
    Metric: json_valid."""
    fields: list[str] = Field(default_factory=list)
    """Field paths compared with the reference object (`severity`, `owner.team`, `tables[0]`).
    Metrics: json_<path> (non-alphanumerics as _), json_field_accuracy."""
    normalize: list[Literal["lower", "whitespace", "punctuation", "articles"]] = Field(
        default_factory=lambda: ["lower", "whitespace"]
    )
    """Normalisations applied to string values before comparing."""

    @field_validator("json_schema")
    @classmethod
    def _valid_schema(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            try:
                jsonschema.validators.validator_for(value).check_schema(value)
            except jsonschema.SchemaError as exc:
                raise ValueError(f"not a valid JSON Schema: {exc.message}") from None
        return value

    @field_validator("fields")
    @classmethod
    def _paths(cls, value: list[str]) -> list[str]:
        for path in value:
            if not re.fullmatch(r"[^.\[\]]+(\.[^.\[\]]+|\[\d+\])*", path):
                raise ValueError(f"field {path!r}: a path is names joined by '.', with [n] for list items")
        return value


class ToolCallsScorer(StrictModel):
    type: Literal["tool_calls"]
    """Tool calls of the answer against the reference answer's (items carry `tools`). Metrics, over items
    whose reference makes calls: tool_name_accuracy (the same functions), tool_call_exact (the same names and
    arguments), tool_args_f1 (F1 over argument leaves); over items whose reference makes none:
    no_call_accuracy."""


Scorer = Annotated[
    JsonScorer
    | ToolCallsScorer
    | FormatScorer
    | FieldsScorer
    | ExactMatchScorer
    | SimpleScorer
    | SimilarScorer
    | ClassificationScorer
    | RefusalScorer
    | JudgeScorer,
    Field(discriminator="type"),
]


class TaskConfig(StrictModel):
    model_config = ConfigDict(**StrictModel.model_config, populate_by_name=True)

    name: str = Field(pattern=NAME)
    """Task name, used in gate metrics as <task>.<metric>."""
    kind: Literal["generate", "lm_eval"] = "generate"
    """generate: answers to the items, scored by `scorers`; lm_eval: an lm-evaluation-harness task."""
    data: str | None = None
    """JSONL items: conversations ending in the reference answer, or prompt-only items (`prompt` or
    `messages`) with optional `assert`, `expect` and `label` fields (generate tasks)."""
    sources: list[str] | None = None
    """Only the items whose `source` is one of these (curated splits record the source each record was read
    from), to score one slice of a mixed file (null: every item)."""
    scorers: list[Scorer] = Field(default_factory=list)
    """What is computed on each answer (generate tasks)."""
    assertions: list[Assertion] = Field(default_factory=list, alias="assert")
    """Checks applied to every answer, besides each item's own `assert` list. Metric: pass_rate."""
    task: str | None = None
    """lm_eval: the lm-evaluation-harness task name."""
    include_path: str | None = None
    """lm_eval: a directory of task YAMLs (workspace-relative) to register before looking the task up."""
    num_fewshot: int | None = Field(None, ge=0)
    """lm_eval: few-shot examples (null: the task's default)."""
    limit: int | None = Field(None, gt=0)
    """lm_eval: evaluate only the first N documents."""
    tokenizer: str | None = None
    """lm_eval on an --endpoint: the served model's tokenizer (a directory or hub id), which the harness needs
    for log-likelihood tasks."""

    @model_validator(mode="after")
    def _kind_fields(self) -> TaskConfig:
        if self.kind == "generate":
            if self.data is None:
                raise ValueError(f"task {self.name!r}: a generate task needs `data`")
            if self.task is not None or self.include_path is not None:
                raise ValueError(f"task {self.name!r}: `task`/`include_path` belong to kind lm_eval")
            if self.sources == []:
                raise ValueError(f"task {self.name!r}: `sources` lists at least one source (null: every item)")
        else:
            if self.task is None:
                raise ValueError(f"task {self.name!r}: an lm_eval task needs `task` (the harness task name)")
            if self.scorers or self.assertions or self.data is not None or self.sources is not None:
                raise ValueError(f"task {self.name!r}: lm_eval tasks are scored by the harness (no data/scorers)")
        names = [s.type for s in self.scorers]
        if len(names) != len(set(names)):
            raise ValueError(f"task {self.name!r}: each scorer type at most once")
        return self


class GenerationConfig(StrictModel):
    max_new_tokens: int = Field(64, gt=0)
    """Longest answer generated, in tokens."""
    batch_size: int = Field(16, gt=0)
    """Local models: requests decoded together by the engine."""
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """Local models: the dtype they run in, as serve's `dtype` (auto: the model's own where the device runs it fast)."""
    device: str = Field("auto", pattern=DEVICE_PATTERN)
    """Local models: where they run, as serve's `device` (auto: the first CUDA GPU PyTorch sees, else the CPU)."""


class EndpointConfig(StrictModel):
    concurrency: int = Field(8, gt=0)
    """Requests in flight at once to an --endpoint target."""
    timeout_s: float = Field(120, gt=0)
    """Per request."""
    retries: int = Field(3, ge=0)
    """Retries of a request that failed to connect, timed out, or got 429/5xx (exponential backoff)."""
    api_key_env: str | None = None
    """Environment variable holding the endpoint's API key (null: none sent)."""


class GateConfig(StrictModel):
    metric: str = Field(pattern=r"^[A-Za-z0-9_-]+\.[a-z0-9_]+$")
    """The metric gated, as <task>.<metric>, e.g. support.format_rate or support.rouge2."""
    op: Literal[">=", ">", "<=", "<"] = ">="
    """Absolute gates: comparison with the threshold."""
    threshold: float | None = None
    """Absolute gate: the value the model's metric must reach."""
    max_drop: float | None = Field(None, ge=0)
    """Relative gate: the model may be worse than the baseline by at most this much."""
    min_gain: float | None = None
    """Relative gate: the model must be better than the baseline by at least this much."""
    tier: Literal["critical", "supporting", "advisory"] = "critical"
    """critical: decides GO / NO-GO; supporting: a failure makes the verdict at best INCONCLUSIVE;
    advisory: reported only."""

    @model_validator(mode="after")
    def _one_kind(self) -> GateConfig:
        given = [k for k in ("threshold", "max_drop", "min_gain") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"gate {self.metric}: give exactly one of threshold, max_drop, min_gain")
        return self

    @property
    def relative(self) -> bool:
        return self.threshold is None


def _replay_gates() -> list[GateConfig]:
    return [
        GateConfig(metric="replay.over_refusal_rate", max_drop=0.05),
        GateConfig(metric="replay_json.json_valid", max_drop=0.02),
        GateConfig(metric="replay_tools.tool_name_accuracy", max_drop=0.05),
        GateConfig(metric="replay_tools.no_call_accuracy", max_drop=0.05),
        GateConfig(metric="replay.judge_score", max_drop=0.25, tier="supporting"),
        GateConfig(metric="replay.similar", max_drop=0.2, tier="advisory"),
    ]


class ReplayConfig(StrictModel):
    """`tunewright eval --replay WINDOW`: production's captured prompts as the suite (evaluate/replay.py)."""

    store: str = "monitor/capture.sqlite"
    """The capture store the window is read from."""
    max_items: int | None = Field(500, gt=0)
    """Replay at most this many of the window's requests, oldest first (null: all)."""
    similar_threshold: float = Field(0.8, ge=-1, le=1)
    """Cosine similarity to production's answer that counts as agreeing with it (metric replay.similar)."""
    gates: list[GateConfig] = Field(default_factory=_replay_gates)
    """Gates of a replay (tasks replay, replay_json, replay_tools); those whose task a window lacks are left out."""


class EvalConfig(StrictModel):
    tasks: list[TaskConfig] = Field(min_length=1)
    """The evaluation tasks."""
    generation: GenerationConfig = Field(default_factory=GenerationConfig)
    """How answers are generated (greedy)."""
    endpoint: EndpointConfig = Field(default_factory=EndpointConfig)
    """How --endpoint targets are called."""
    gates: list[GateConfig] = Field(default_factory=list)
    """Release gates, fixed before any result exists."""
    confidence: float = Field(0.95, gt=0.5, lt=1)
    """Confidence level of the bootstrap intervals."""
    bootstrap: int = Field(2000, ge=100)
    """Bootstrap resamples over items."""
    seed: int = 0
    """Seed of the bootstrap and of the blind-review shuffle."""
    report: str = "reports/eval-report.md"
    """Where the Markdown report is written; the HTML report goes beside it (copies stay in the run)."""
    replay: ReplayConfig = Field(default_factory=ReplayConfig)
    """Replays of captured production traffic (eval --replay WINDOW)."""

    @model_validator(mode="after")
    def _unique_tasks(self) -> EvalConfig:
        names = [t.name for t in self.tasks]
        if len(names) != len(set(names)):
            raise ValueError("task names must be unique")
        return self
