"""lm-evaluation-harness tasks as eval tasks, run through its Python API on the same targets.

A local model is scored through `engine_lm`, an lm-eval `TemplateLM` whose log-likelihoods
and generations come from the serving engine (one generation path in the codebase, and the
harness's own tokenisation rules for context/continuation splits). An endpoint target is
handed to the harness's `local-chat-completions` model (generation tasks) or
`local-completions` (log-likelihood tasks, which need the server's `echo` + `logprobs`).

Per-sample scores come back from the harness (`log_samples`), so a harness metric gets the
same paired bootstrap interval and gates as any other. Only metrics the harness aggregates
with a mean are taken (acc, acc_norm, exact_match, ...); their value is checked against
the harness's own aggregate. A metric named `acc` under the filter `none` keeps its name;
under another filter it becomes `<metric>_<filter>` (lower-case letters, digits and _).
"""

from __future__ import annotations

import functools
import json
import os
import re
from pathlib import Path
from typing import Any

from tunewright.core.errors import UserError
from tunewright.core.export_versions import resolve_version
from tunewright.core.progress import progress_bar
from tunewright.core.workspace import resolve
from tunewright.engine.offline import continuation_logprobs
from tunewright.engine.params import SamplingParams
from tunewright.evaluate.config import EvalConfig, TaskConfig
from tunewright.evaluate.results import TaskResult
from tunewright.evaluate.stats import mean_metric
from tunewright.evaluate.targets import EndpointTarget, LocalTarget, Target


def _harness() -> Any:
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")  # task data comes from local files, never the hub
    try:
        import lm_eval
        from lm_eval.tasks import TaskManager, get_task_dict
    except ImportError:
        raise UserError("lm_eval tasks need lm-evaluation-harness: pip install 'tunewright[lm-eval]'") from None
    return lm_eval, TaskManager, get_task_dict


def metric_key(metric: str, filter_name: str) -> str:
    name = metric if filter_name == "none" else f"{metric}_{filter_name}"
    return re.sub(r"[^a-z0-9_]+", "_", name.lower()).strip("_")


@functools.cache
def _manager(include: str | None) -> Any:
    """lm-eval's task index (it scans every task YAML: seconds), built once per process and include path."""
    _, task_manager_cls, _ = _harness()
    return task_manager_cls(include_path=include, include_defaults=include is None)


def _load(task: TaskConfig, workspace: Path) -> tuple[Any, Any]:
    _, _, get_task_dict = _harness()
    include = str(resolve(workspace, task.include_path)) if task.include_path else None
    manager = _manager(include)
    try:
        found = get_task_dict([task.task], manager)
    except (KeyError, ValueError) as exc:
        raise UserError(f"task {task.name}: lm-eval has no task {task.task!r} ({exc})") from None
    if task.task not in found:
        raise UserError(f"task {task.name}: {task.task!r} is a group in lm-eval; name one of its tasks")
    return manager, found[task.task]


def _mean_metrics(harness_task: Any) -> list[tuple[str, str, str, bool]]:
    """(key, metric, filter, higher_is_better) of every mean-aggregated metric of the task."""
    from lm_eval.api.metrics import mean

    out = []
    for f in harness_task._filters:
        for metric, agg in harness_task._aggregation_list.items():
            if agg is mean:
                higher = bool(harness_task._higher_is_better.get(metric, True))
                out.append((metric_key(metric, f.name), metric, f.name, higher))
    return out


def harness_metrics(task: TaskConfig, workspace: Path) -> list[str]:
    """The metrics an lm_eval task will report (loaded from the harness, before any generation)."""
    _, harness_task = _load(task, workspace)
    names = [key for key, *_ in _mean_metrics(harness_task)]
    if not names:
        raise UserError(f"task {task.name}: {task.task!r} has no mean-aggregated metric that can be gated")
    return names


def engine_lm(target: LocalTarget, max_new_tokens: int) -> Any:
    """An lm-eval `TemplateLM` over a local target's engine (lm-eval is imported only when used)."""
    from lm_eval.api.model import TemplateLM

    class EngineLM(TemplateLM):
        def __init__(self) -> None:
            super().__init__()
            self.tokenizer = target.tokenizer

        @property
        def eot_token_id(self) -> int:
            return self.tokenizer.eos_token_id

        @property
        def prefix_token_id(self) -> int:
            bos = self.tokenizer.bos_token_id
            return bos if bos is not None else self.eot_token_id

        @property
        def tokenizer_name(self) -> str:
            return str(self.tokenizer.name_or_path).replace("/", "__")

        def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs: Any) -> list[int]:
            return self.tokenizer(string, add_special_tokens=bool(add_special_tokens))["input_ids"]

        def _loglikelihood_tokens(self, requests: list, disable_tqdm: bool = False, **kwargs: Any) -> list:
            pairs = [(list(ctx), list(cont)) for _, ctx, cont in requests]
            engine = target.engine(max(len(c) + len(x) for c, x in pairs))
            with progress_bar("lm-eval log-likelihoods", total=len(pairs)) as advance:
                return continuation_logprobs(engine, pairs, advance)

        def loglikelihood_rolling(self, requests: list, disable_tqdm: bool = False) -> list[float]:
            pairs = [([self.prefix_token_id], self.tok_encode(r.args[0])) for r in requests]
            longest, context = max(len(x) + 1 for _, x in pairs), target.context
            if context and longest > context:  # scored whole: a longer document would need sliding windows
                raise UserError(f"a document of {longest} tokens is longer than the model's context ({context})")
            return [total for total, _ in self._loglikelihood_tokens([(None, c, x) for c, x in pairs])]

        def generate_until(self, requests: list, disable_tqdm: bool = False) -> list[str]:
            groups: dict[tuple[int, tuple[str, ...]], list[int]] = {}
            prompts = []
            for i, r in enumerate(requests):
                context, kwargs = r.args
                until = kwargs.get("until") or []
                key = (
                    int(kwargs.get("max_gen_toks", max_new_tokens)),
                    (until,) if isinstance(until, str) else tuple(until),
                )
                groups.setdefault(key, []).append(i)
                prompts.append(self.tok_encode(context))
            answers = [""] * len(requests)
            engine = target.engine(max(map(len, prompts)) + max(k[0] for k in groups))
            with progress_bar("lm-eval generations", total=len(prompts)) as advance:
                for (max_tokens, stop), rows in groups.items():
                    params = SamplingParams(max_tokens=max_tokens, stop=list(stop))
                    outs = engine.generate([prompts[i] for i in rows], params, advance=advance)
                    for i, out in zip(rows, outs, strict=True):
                        answers[i] = out.text
            return answers

    return EngineLM()


def _endpoint_lm(task: TaskConfig, workspace: Path, target: EndpointTarget, harness_task: Any) -> tuple[str, dict]:
    if harness_task.OUTPUT_TYPE == "generate_until":
        return "local-chat-completions", {"model": target.model, "base_url": f"{target.url}/chat/completions"}
    if task.tokenizer is None:
        raise UserError(
            f"task {task.name}: log-likelihoods over an endpoint need the served model's tokenizer "
            "(tokenizer: a directory or hub id)"
        )
    local = resolve_version(resolve(workspace, task.tokenizer))
    return "local-completions", {
        "model": target.model,
        "base_url": f"{target.url}/completions",
        "tokenizer_backend": "huggingface",
        "tokenizer": str(local) if local.exists() else task.tokenizer,
        "max_retries": target.config.retries,
        "num_concurrent": target.config.concurrency,
    }


def run_harness_task(task: TaskConfig, workspace: Path, target: Target, cfg: EvalConfig) -> TaskResult:
    """Run one lm-eval task on the target: its items, answers and per-sample scores."""
    lm_eval, _, _ = _harness()
    manager, harness_task = _load(task, workspace)
    if isinstance(target, LocalTarget):
        model: Any = engine_lm(target, cfg.generation.max_new_tokens)
        model_args = None
    else:
        model, model_args = _endpoint_lm(task, workspace, target, harness_task)
    out = lm_eval.simple_evaluate(
        model=model,
        model_args=model_args,
        tasks=[task.task],
        task_manager=manager,
        num_fewshot=task.num_fewshot,
        limit=task.limit,
        log_samples=True,
        bootstrap_iters=0,
        random_seed=cfg.seed,
        apply_chat_template=isinstance(target, EndpointTarget) and harness_task.OUTPUT_TYPE == "generate_until",
    )
    results, samples = out["results"][task.task], out["samples"][task.task]
    result = TaskResult(task.name, [], [], [], [], None)
    for key, metric, filter_name, higher in _mean_metrics(harness_task):
        rows = sorted((s for s in samples if s.get("filter", "none") == filter_name), key=lambda s: s["doc_id"])
        values = [float(s[metric]) for s in rows]
        m = mean_metric(key, values, higher)
        reported = results.get(f"{metric},{filter_name}")
        if reported is not None and abs(float(reported) - m.value) > 1e-6:
            raise RuntimeError(f"{task.name}.{key}: per-sample mean {m.value} differs from lm-eval's {reported}")
        result.metrics[key] = m
        if result.answers is None:
            prompts = [_prompt(s) for s in rows]
            result.ids = [str(s["doc_id"]) for s in rows]
            result.references = [str(s.get("target")) for s in rows]
            result.prompts = prompts
            result.questions = [p[-1]["content"] if p else "" for p in prompts]
            result.answers = [_answer(s, harness_task.OUTPUT_TYPE) for s in rows]
    return result


def _prompt(sample: dict[str, Any]) -> list[dict[str, str]]:
    """What the model was asked: the chat messages lm-eval sent (chat models), else its text as one user turn."""
    first = sample["arguments"][0][0] if sample.get("arguments") else ""
    if hasattr(first, "prompt"):  # lm-eval's JsonChatStr: the messages as JSON
        try:
            return [{"role": m["role"], "content": m["content"]} for m in json.loads(first.prompt)]
        except (ValueError, KeyError, TypeError):
            first = first.prompt
    return [{"role": "user", "content": str(first)}]


def _answer(sample: dict[str, Any], output_type: str) -> str:
    """What the model answered: the most likely choice of a multiple-choice item, else its (filtered) text."""
    resp = sample.get("filtered_resps")
    if output_type == "multiple_choice" and isinstance(resp, list) and resp and sample.get("arguments"):
        best = max(range(len(resp)), key=lambda i: float(resp[i][0] if isinstance(resp[i], list | tuple) else resp[i]))
        return str(sample["arguments"][best][1]).strip()
    while isinstance(resp, list) and len(resp) == 1:
        resp = resp[0]
    return str(resp)
