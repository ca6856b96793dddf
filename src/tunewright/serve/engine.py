"""The inference engine behind the server: one loaded model, one request at a time.

The model runs under a lock (a CPU model gains nothing from concurrent generate calls
and PyTorch modules are not re-entrant under generate). Streaming runs `generate` in a
worker thread and yields decoded text as tokens arrive.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from transformers import TextIteratorStreamer

from tunewright.core.model_source import ModelSource
from tunewright.core.modeling import Generation, generate_chat


def cut_at_stop(text: str, stops: list[str]) -> tuple[str, bool]:
    """Truncate `text` at the first stop string; True if one was found."""
    hits = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    return (text[: min(hits)], True) if hits else (text, False)


@dataclass
class Sampling:
    """How to decode one request: greedy when temperature is 0."""

    max_new_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stops: list[str] = field(default_factory=list)


@dataclass
class StreamEvent:
    text: str
    finish_reason: str | None = None


class Engine:
    def __init__(self, source: ModelSource) -> None:
        self.source = source
        self.model, self.tokenizer = source.load()
        self.lock = threading.Lock()

    def count_prompt_tokens(self, messages: list[dict[str, str]]) -> int:
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def chat(self, messages: list[dict[str, str]], sampling: Sampling) -> Generation:
        """One complete answer."""
        s = sampling
        with self.lock:
            gen = generate_chat(
                self.model, self.tokenizer, [messages], s.max_new_tokens, 1, s.temperature, s.top_p, s.seed
            )[0]
        text, stopped = cut_at_stop(gen.text, s.stops)
        if stopped:
            gen.text, gen.finish_reason = text, "stop"
        return gen

    def stream(self, messages: list[dict[str, str]], sampling: Sampling) -> Iterator[StreamEvent]:
        """Yield text deltas, then a final event with the finish reason."""
        max_new_tokens, temperature, seed, stops = (
            sampling.max_new_tokens,
            sampling.temperature,
            sampling.seed,
            sampling.stops,
        )
        tok = self.tokenizer
        prompt = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        enc = tok(prompt, return_tensors="pt", add_special_tokens=False).to(self.model.device)
        streamer = TextIteratorStreamer(tok, skip_prompt=True, skip_special_tokens=True)
        eos = self.model.generation_config.eos_token_id or tok.eos_token_id
        kwargs = dict(
            **enc,
            max_new_tokens=max_new_tokens,
            streamer=streamer,
            pad_token_id=tok.pad_token_id,
            eos_token_id=eos,
            do_sample=temperature > 0,
        )
        if temperature > 0:
            kwargs.update(temperature=temperature, top_p=sampling.top_p)
        out: dict[str, torch.Tensor] = {}

        def work() -> None:
            if seed is not None:
                torch.manual_seed(seed)
            with torch.no_grad():
                out["seqs"] = self.model.generate(**kwargs)

        with self.lock:
            worker = threading.Thread(target=work, daemon=True)
            worker.start()
            sent = ""
            stopped = False
            for piece in streamer:
                if stopped:
                    continue
                candidate, stopped = cut_at_stop(sent + piece, stops)
                if candidate[len(sent) :]:
                    yield StreamEvent(candidate[len(sent) :])
                sent = candidate
            worker.join()
        new_tokens = out["seqs"].shape[1] - enc["input_ids"].shape[1]
        eos_ids = set(eos if isinstance(eos, list) else [eos])
        ended = stopped or (new_tokens > 0 and int(out["seqs"][0, -1]) in eos_ids)
        yield StreamEvent("", "stop" if ended or new_tokens < max_new_tokens else "length")
