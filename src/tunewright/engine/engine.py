"""The engine: continuous (in-flight) batching of generation requests on one model.

A background thread owns the model and loops over steps. Each step it takes new requests
into free KV-cache slots (the waiting queue is bounded: a full queue refuses at once),
drops cancelled and timed-out ones, then runs one forward pass over a flat batch: one token
for every request that is decoding, plus chunks of the prompts being read, up to
`max_num_batched_tokens` (chunked prefill, so a long prompt never stalls the decoders).
The rows that end a prompt or decode a token are sampled, and each request's callback gets
the new text. Requests for different LoRA adapters share a step.

Callers use `submit` (an event callback per request, for the server) or `generate` (a
list of prompts in, completions out, for eval and export parity): one generation path.
`generate` on an engine whose thread is not running steps the engine on the caller's own
thread: OpenMP (libgomp) keeps a thread pool per thread that ran parallel work and stops
spin-waiting between parallel regions once the pools hold more threads than there are cores,
so stepping on a second thread while the caller's pool (it loaded the model) lingers made
every step about 1.7x slower on 2 cores.
"""

from __future__ import annotations

import atexit
import dataclasses
import itertools
import logging
import threading
import time
import weakref
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from tunewright.core import chat
from tunewright.core.allocator import keep_freed_memory
from tunewright.core.model_source import ModelSource
from tunewright.engine.batch import Segment, StepBatch
from tunewright.engine.choice import allowed_tokens, is_complete
from tunewright.engine.detokenize import Detokenizer
from tunewright.engine.grammar import GrammarError, Grammars
from tunewright.engine.hf import HFRunner
from tunewright.engine.llama import LlamaRunner, unsupported_reason
from tunewright.engine.lora import UnsupportedAdapter, adapter_name_for, read_adapter
from tunewright.engine.params import Completion, Output, SamplingParams
from tunewright.engine.prefix import PrefixIndex
from tunewright.engine.requests import (
    EngineClosed,
    EngineConfig,
    PromptTooLong,
    QueueFull,
    RequestHandle,
    Sequence,
    UnknownAdapter,
)
from tunewright.engine.sampler import choose, new_generator, token_logprob

log = logging.getLogger("tunewright.engine")


class Engine:
    """Continuous batching over one base model with any number of LoRA adapters."""

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        config: EngineConfig | None = None,
        adapters: dict[str, Path] | None = None,
        default_adapter: str | None = None,
    ) -> None:
        keep_freed_memory()  # every step allocates and frees the same large tensors (see core/allocator.py)
        self.config = config or EngineConfig()
        self.tokenizer = tokenizer
        self.eos_ids = set(chat.end_of_turn_ids(tokenizer, getattr(model, "generation_config", None)))
        vocab_size = model.get_output_embeddings().weight.shape[0]  # the logits' width
        self.grammars = Grammars(tokenizer, vocab_size, self.eos_ids)
        self.runner = self._build_runner(model, adapters or {})
        caching = self.config.prefix_caching and isinstance(self.runner, LlamaRunner)
        self.prefix = PrefixIndex() if caching else None
        self.reused_tokens = 0  # prompt tokens whose keys and values came from the prefix cache
        self._steps = 0  # steps planned, for background requests' turns
        self.default_adapter = default_adapter
        self._ids = itertools.count(1)
        self._cond = threading.Condition()
        self._incoming: deque[Sequence] = deque()
        self._control: deque[tuple[Callable[[], Any], Future]] = deque()
        self._waiting: deque[Sequence] = deque()
        self._running: list[Sequence] = []
        self._thread: threading.Thread | None = None
        self._driving = False  # `generate` is stepping the engine on its caller's thread
        self._closing = False
        self._stop = False

    def _build_runner(self, model: PreTrainedModel, adapters: dict[str, Path]) -> LlamaRunner | HFRunner:
        """The Llama-family runner when it can serve the model and every adapter, else the generic one."""
        c = self.config
        reason = unsupported_reason(model)
        for name, path in adapters.items() if reason is None else []:
            try:  # checked before the Llama runner takes the model over
                read_adapter(Path(path), model.dtype)
            except UnsupportedAdapter as exc:
                reason = f"adapter {name!r}: {exc}"
                break
        if reason is None:
            runner = LlamaRunner(model, c.max_num_seqs, c.max_model_len)
            for name, path in adapters.items():
                runner.lora.add(name, Path(path))
            return runner
        log.warning("using the generic (slower) runner: %s", reason)
        generic = HFRunner(model, c.max_num_seqs, c.max_model_len)
        for name, path in adapters.items():
            generic.lora.add(name, Path(path))
        return generic

    @classmethod
    def from_source(
        cls,
        source: ModelSource,
        config: EngineConfig | None = None,
        adapters: dict[str, Path] | None = None,
        loaded: tuple[PreTrainedModel, PreTrainedTokenizerBase] | None = None,
    ) -> Engine:
        """The one way to build an engine for a model reference: its base, with its own adapter (if any) as the
        default and `adapters` beside it; `max_model_len` bounded by the model's context window (as vLLM's
        is). `loaded` reuses a base already in memory."""
        model, tokenizer = loaded if loaded is not None else source.load_base()
        config = dataclasses.replace(config or EngineConfig())
        context = getattr(model.config, "max_position_embeddings", None)
        if context:
            config.max_model_len = min(config.max_model_len, context)
        name = adapter_name_for(source.label)
        served = {name: source.adapter} if source.adapter is not None else {}
        served.update(adapters or {})
        return cls(model, tokenizer, config, served, name if source.adapter is not None else None)

    # ---- adapters --------------------------------------------------------------------------------------

    @property
    def adapters(self) -> list[str]:
        """Names of the loaded adapters."""
        return sorted(self.runner.lora.index)

    def add_adapter(self, name: str, path: Path) -> None:
        """Load (or reload) a PEFT LoRA adapter under `name`; applied between steps."""

        def load() -> None:
            try:
                self.runner.lora.add(name, Path(path), self._adapters_in_use())
            except UnsupportedAdapter as exc:
                raise ValueError(f"adapter {name!r} at {path}: {exc}") from None

        self._in_loop(load)

    def remove_adapter(self, name: str) -> bool:
        """Unload an adapter; requests already using it finish with it."""
        return self._in_loop(lambda: self.runner.lora.remove(name, self._adapters_in_use()))

    def _adapters_in_use(self) -> set[int]:
        return {r.adapter for r in (*self._running, *self._waiting, *self._incoming)}

    def _in_loop(self, fn: Callable[[], Any]) -> Any:
        """Run `fn` on the engine thread between steps (directly when the thread is not running)."""
        if self._thread is None or not self._thread.is_alive():
            return fn()
        done: Future = Future()
        with self._cond:
            self._control.append((fn, done))
            self._cond.notify()
        return done.result()

    # ---- requests --------------------------------------------------------------------------------------

    def chat_prompt(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None) -> list[int]:
        """The token ids of a conversation (and its tools) rendered with the chat template, ready for an answer."""
        return chat.prompt_ids(self.tokenizer, messages, tools)

    def stats(self) -> dict[str, dict[str, int]]:
        """Requests decoding now and waiting for a slot, per adapter name ("" for the base model)."""
        with self._cond:
            running = Counter(r.adapter_name or "" for r in list(self._running))
            waiting = Counter(r.adapter_name or "" for r in [*self._waiting, *self._incoming])
        return {"running": dict(running), "waiting": dict(waiting)}

    def submit(
        self,
        prompt: list[int],
        params: SamplingParams,
        on_event: Callable[[Output], None],
        adapter: str | None = None,
        bounded: bool = True,
        every: int = 1,
    ) -> RequestHandle:
        """Queue one request; `on_event` gets its outputs on the engine thread (keep it quick). With `every` > 1 it
        is background work (a shadow's): while requests of every step run it advances in one step of `every`,
        so the cost it adds to a step is paid in that share of them; with none, it advances every step."""
        name = adapter if adapter is not None else self.default_adapter
        index = 0
        if name is not None:
            if name not in self.runner.lora.index:
                raise UnknownAdapter(name)
            index = self.runner.lora.index[name]
        if not prompt:
            raise PromptTooLong("the prompt is empty")
        if len(prompt) + (1 if params.max_tokens else 0) > self.config.max_model_len:
            raise PromptTooLong(
                f"the prompt has {len(prompt)} tokens; this engine takes at most {self.config.max_model_len} "
                "tokens of prompt and answer together"
            )
        request = Sequence(next(self._ids), list(prompt), params, index, name, on_event, time.monotonic())
        request.tokens, request.every = list(prompt), max(1, every)
        with self._cond:
            if self._closing:
                raise EngineClosed("the engine is shutting down")
            beyond_free_slots = len(self._waiting) + len(self._incoming) - len(self.runner.cache.free)
            if bounded and beyond_free_slots >= self.config.max_waiting:
                raise QueueFull(f"{self.config.max_waiting} requests are already waiting for a slot")
            self._incoming.append(request)
            self._cond.notify()
        self._ensure_thread()
        return RequestHandle(request, self._wake)

    def generate(
        self,
        prompts: list[list[int]],
        params: SamplingParams,
        adapter: str | None = None,
        advance: Callable[[int], None] | None = None,
    ) -> list[Completion]:
        """Run every prompt to completion (all queued at once) and return the results in order."""
        results = [Completion() for _ in prompts]
        left = threading.Semaphore(0)

        def collect(i: int) -> Callable[[Output], None]:
            def on_event(out: Output) -> None:
                results[i].add(out)
                if out.finish_reason is not None:
                    if advance is not None:
                        advance(1)
                    left.release()

            return on_event

        inline = self._claim_inline()
        try:
            for i, prompt in enumerate(prompts):
                self.submit(prompt, params, collect(i), adapter, bounded=False)
            if inline:
                while not all(r.finish_reason is not None for r in results):
                    self._turn(wait=False)
        finally:
            if inline:
                self._release_inline()
        for _ in prompts:
            left.acquire()
        failed = next((r for r in results if r.finish_reason == "error"), None)
        if failed is not None:
            raise RuntimeError(f"generation failed: {failed.error}")
        return results

    def shutdown(self, drain: bool = True, timeout: float | None = None) -> None:
        """Stop taking requests; with `drain`, let the queued and running ones finish first."""
        with self._cond:
            self._closing = True
            if not drain:
                for r in (*self._incoming, *self._waiting, *self._running):
                    r.cancelled = True
            self._cond.notify()
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._thread is not None and self._thread.is_alive():
            with self._cond:
                if not (self._incoming or self._waiting or self._running):
                    self._stop = True
                    self._cond.notify()
            self._thread.join(timeout=0.05)
            if deadline is not None and time.monotonic() > deadline:
                with self._cond:
                    for r in (*self._incoming, *self._waiting, *self._running):
                        r.cancelled = True
                deadline = None

    # ---- the loop --------------------------------------------------------------------------------------

    def _wake(self) -> None:
        with self._cond:
            self._cond.notify()

    def _claim_inline(self) -> bool:
        """Step on the calling thread until its requests are done, if no engine thread is running."""
        with self._cond:
            if self._driving or (self._thread is not None and self._thread.is_alive()):
                return False
            self._driving = True
            return True

    def _release_inline(self) -> None:
        """Stop stepping inline; requests another thread queued meanwhile go to an engine thread."""
        with self._cond:
            self._driving = False
            leftover = bool(self._incoming or self._waiting or self._running or self._control)
        if leftover:
            self._ensure_thread()

    def _ensure_thread(self) -> None:
        with self._cond:
            if self._driving:
                return
            if self._thread is None or not self._thread.is_alive():
                self._stop = False
                self._thread = threading.Thread(target=self._loop, name="tunewright-engine", daemon=True)
                self._thread.start()
                atexit.register(_stop_at_exit, weakref.ref(self))

    def _loop(self) -> None:
        while self._turn(wait=True):
            pass

    def _turn(self, wait: bool) -> bool:
        """One turn of the loop: take new requests and control calls, reap, admit, step. With `wait`, sleep
        until there is work; returns False when the engine has stopped."""
        with self._cond:
            while wait and not (self._incoming or self._waiting or self._running or self._control or self._stop):
                self._cond.wait()
            if self._stop and not (self._incoming or self._waiting or self._running):
                return False
            self._waiting.extend(self._incoming)
            self._incoming.clear()
            control = list(self._control)
            self._control.clear()
        for fn, done in control:
            try:
                done.set_result(fn())
            except Exception as exc:  # handed to the caller of _in_loop
                done.set_exception(exc)
        self._reap()
        if self.runner.lora.retired:
            self.runner.lora.collect(self._adapters_in_use())
        self._admit()
        if not self._running:
            with self._cond:
                if wait and self._waiting and not self._incoming and not self._control:
                    self._cond.wait(timeout=0.05)  # waiting for a slot or a deadline
            return True
        try:
            self._step()
        except Exception as exc:  # a failed step fails its requests, not the engine
            log.exception("engine step failed")
            for r in list(self._running):
                self._finish(r, "error", error=f"{type(exc).__name__}: {exc}")
        return True

    def _reap(self) -> None:
        now = time.monotonic()
        for queue in (self._waiting, self._running):
            for r in list(queue):
                if r.cancelled:
                    self._finish(r, "abort")
                elif r.deadline is not None and now > r.deadline:
                    self._finish(r, "timeout")

    def _admit(self) -> None:
        """Give waiting requests free slots, reusing a cached prompt prefix where there is one."""
        while self._waiting and self.runner.cache.free:
            r = self._waiting.popleft()
            if r.params.grammar is not None:
                try:
                    r.matcher = self.grammars.start(r.params.grammar)
                except GrammarError as exc:
                    self._finish(r, "error", error=str(exc))
                    continue
            if self.prefix is not None and r.params.prompt_logprobs is None:
                running = [(q.slot, q.adapter, q.tokens[: q.computed]) for q in self._running]
                slot, source, reused = self.prefix.place(self.runner.cache.free, running, r.prompt, r.adapter)
                self.runner.cache.free.remove(slot)
                if source is not None:
                    self.runner.copy_prefix(source, slot, reused)
                self.prefix.forget(slot)
                r.computed = reused
                self.reused_tokens += reused
            else:
                slot = self.runner.cache.allocate()
            r.slot, r.generator, r.admitted = slot, new_generator(r.params), time.monotonic()
            r.detok = Detokenizer(self.tokenizer, r.params.stop)
            self._running.append(r)

    def _plan(self) -> tuple[StepBatch, list[tuple[Sequence, int, int]]]:
        """The step's flat batch: every decoding request, then prompt chunks within the token budget."""
        budget = self.config.max_num_batched_tokens
        self._steps += 1
        running = self._running
        if any(r.every > 1 for r in running) and any(r.every == 1 for r in running):
            running = [r for r in running if self._steps % r.every == 0]
        work = [(r, r.computed, r.computed + 1) for r in running if len(r.tokens) - r.computed == 1]
        budget -= len(work)
        for r in running:
            left = len(r.tokens) - r.computed
            if left > 1 and budget > 0:
                take = min(left, budget)
                work.append((r, r.computed, r.computed + take))
                budget -= take
        # the runner takes one-token rows first, in slot order (they attend together), then the chunks
        work.sort(key=lambda w: (w[2] - w[1] != 1, w[0].slot if w[2] - w[1] == 1 else 0))
        ids: list[int] = []
        positions: list[int] = []
        segments, rows = [], []
        for r, a, b in work:
            start = len(ids)
            segments.append(Segment(start, b - a, r.slot, a, r.adapter))
            ids += r.tokens[a:b]
            positions += range(a, b)
            if r.params.prompt_logprobs is not None and a < len(r.prompt):
                rows += range(start, start + (b - a))
            elif b == len(r.tokens):
                rows.append(start + (b - a) - 1)
        device = self.runner.device
        batch = StepBatch(
            torch.tensor(ids, device=device),
            torch.tensor(positions, device=device),
            segments,
            torch.tensor(rows, dtype=torch.long, device=device),
        )
        return batch, work

    @torch.inference_mode()
    def _step(self) -> None:
        batch, work = self._plan()
        logits = self.runner.forward(batch)
        at = 0
        ready: list[tuple[Sequence, int]] = []  # requests whose next token comes from logits row i
        for r, a, b in work:
            r.computed = b
            if r.params.prompt_logprobs is not None and a < len(r.prompt):
                self._score_prompt(r, a, b, logits[at : at + (b - a)])
                at += b - a
                if b == len(r.tokens):
                    ready.append((r, at - 1))
            elif b == len(r.tokens):
                ready.append((r, at))
                at += 1
        self._sample(ready, logits)

    def _sample(self, ready: list[tuple[Sequence, int]], logits: torch.Tensor) -> None:
        """The next token of every ready request. `logits` are in the model's dtype: greedy rows take one
        argmax over them (widening to float32 is exact, so it is float32's argmax), sampled rows and
        log-probs are computed in float32, one row at a time."""
        eos = sorted(self.eos_ids)
        ending = self._constrain(ready, logits, eos)
        held = [row for r, row in ready if len(r.generated) < r.params.min_tokens and row not in ending]
        if held and eos:  # rows are this step's own, one per request
            logits[torch.tensor(held)[:, None], torch.tensor(eos)[None, :]] = float("-inf")
        for r, row in ready:
            if r.params.choices is not None:
                allowed = allowed_tokens(r.params.choices, r.generated)
                if is_complete(r.params.choices, r.generated):
                    allowed |= set(eos)
                keep = logits[row, sorted(allowed)]
                logits[row] = float("-inf")
                logits[row, sorted(allowed)] = keep
        greedy = [row for r, row in ready if r.generator is None]
        best: dict[int, int] = {}
        if greedy:
            rows = logits if greedy == list(range(len(logits))) else logits[greedy]
            # max's indices are argmax's (the first maximum; NaN wins in both), and on CPUs bf16 max runs about
            # 3x faster than bf16 argmax over a vocabulary (a decode step of 32 on SmolLM2: 3.3 -> 1.0 ms)
            best = dict(zip(greedy, rows.max(-1).indices.tolist(), strict=True))
        for r, row in ready:
            if r.params.max_tokens == 0:
                self._finish(r, "length")
                continue
            token = best[row] if r.generator is None else choose(logits[row].float(), r.params, r.generator)
            self._advance(r, token, logits[row])

    def _constrain(self, ready: list[tuple[Sequence, int]], logits: torch.Tensor, eos: list[int]) -> set[int]:
        """Mask each grammar-constrained row to the tokens its grammar allows next. Returns the rows whose grammar
        allows nothing but ending the answer: `min_tokens` does not hold those back (the answer is complete)."""
        ending = set()
        for r, row in ready:
            if r.matcher is None:
                continue
            allowed = r.matcher.allowed()
            logits[row].masked_fill_(~allowed.to(logits.device), float("-inf"))
            if int(allowed.sum()) == int(allowed[eos].sum()):
                ending.add(row)
        return ending

    def _score_prompt(self, r: Sequence, a: int, b: int, chunk: torch.Tensor) -> None:
        """Log-probabilities (and the top k) of the prompt tokens a+1..b given their prefixes."""
        if a == 0:
            r.prompt_logprobs.append(None)
        top = r.params.prompt_logprobs or 0
        for j in range(a, min(b, len(r.prompt) - 1)):
            r.prompt_logprobs.append(token_logprob(chunk[j - a].float(), r.prompt[j + 1], top))

    def _advance(self, r: Sequence, token: int, logits: torch.Tensor) -> None:
        """Append the request's next token and tell its consumer (or finish it)."""
        p = r.params
        logprob = [token_logprob(logits.float(), token, p.logprobs)] if p.logprobs is not None else []
        first = not r.generated
        r.generated.append(token)
        r.tokens.append(token)
        if r.matcher is not None:
            try:
                r.matcher.consume(token)
            except GrammarError as exc:  # the mask allowed it, so the backend failed: this request ends, not the step
                self._finish(r, "error", error=str(exc))
                return
        out = Output(token_ids=[token], logprobs=logprob, prompt_tokens=len(r.prompt))
        if first:
            out.queued_s = (r.admitted or r.submitted) - r.submitted
            if p.prompt_logprobs is not None:
                out.prompt_logprobs = list(r.prompt_logprobs)
        if token in self.eos_ids:
            out.completion_tokens = len(r.generated)
            self._finish(r, "stop", out, text_ids=r.generated[:-1])
            return
        assert r.detok is not None
        delta, stopped = r.detok.update(r.generated)
        out.text = delta
        out.completion_tokens = len(r.generated)
        if stopped:
            self._finish(r, "stop", out, flush=False)
        elif p.choices is not None and not allowed_tokens(p.choices, r.generated):
            self._finish(r, "stop", out)
        elif len(r.generated) >= p.max_tokens or len(r.tokens) >= self.config.max_model_len:
            self._finish(r, "length", out)
        else:
            r.on_event(out)

    def _finish(
        self,
        r: Sequence,
        reason: str,
        out: Output | None = None,
        text_ids: list[int] | None = None,
        flush: bool = True,
        error: str | None = None,
    ) -> None:
        out = out or Output(prompt_tokens=len(r.prompt), completion_tokens=len(r.generated))
        if out.prompt_logprobs is None and r.params.prompt_logprobs is not None and not r.generated:
            out.prompt_logprobs = list(r.prompt_logprobs)
        if flush and r.detok is not None:
            out.text += r.detok.flush(text_ids if text_ids is not None else r.generated)
        out.finish_reason, out.error = reason, error
        if r in self._running:
            self._running.remove(r)
        elif r in self._waiting:
            self._waiting.remove(r)
        if r.slot is not None:
            if self.prefix is not None:
                self.prefix.remember(r.slot, r.adapter, r.tokens[: r.computed])
            self.runner.release(r.slot)
            r.slot = None
        try:
            r.on_event(out)
        except Exception:  # a consumer's failure must not stop the engine
            log.exception("request %s: event callback failed", r.id)


def _stop_at_exit(ref: weakref.ref[Engine]) -> None:
    """At interpreter exit, stop a still-running engine thread before torch is torn down under it."""
    engine = ref()
    if engine is not None:
        engine.shutdown(drain=False, timeout=5)
