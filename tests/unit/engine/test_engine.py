"""The engine: greedy answers equal transformers' generate, batching changes nothing, requests end cleanly."""

import json
import threading
import time

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from tunewright.core.modeling import load_tokenizer
from tunewright.demo.sample_data import write_sample_data
from tunewright.engine import Completion, Engine, EngineConfig, SamplingParams
from tunewright.engine.detokenize import Detokenizer
from tunewright.engine.requests import PromptTooLong, QueueFull, UnknownAdapter
from tunewright.engine.sampler import choose


@pytest.fixture(scope="module")
def questions(tmp_path_factory):
    raw = write_sample_data(tmp_path_factory.mktemp("raw"))
    rows = [json.loads(line) for line in raw["golden"].read_text().splitlines()]
    return [[m for m in r["messages"] if m["role"] != "assistant"] for r in rows]


def make_engine(tiny_base, adapters=None, **config):
    model = AutoModelForCausalLM.from_pretrained(tiny_base)
    return Engine(model, load_tokenizer(tiny_base), EngineConfig(**config), adapters)


def test_greedy_answers_equal_transformers_generate(tiny_base, questions):
    engine = make_engine(tiny_base, max_num_seqs=8, max_model_len=256)
    prompts = [engine.chat_prompt(q) for q in questions]
    got = engine.generate(prompts, SamplingParams(max_tokens=32))
    model, tokenizer = AutoModelForCausalLM.from_pretrained(tiny_base).eval(), AutoTokenizer.from_pretrained(tiny_base)
    for prompt, result in zip(prompts, got, strict=True):
        with torch.no_grad():
            out = model.generate(torch.tensor([prompt]), max_new_tokens=32, do_sample=False)[0, len(prompt) :].tolist()
        ended = next((i for i, t in enumerate(out) if t in engine.eos_ids), None)
        expected = out if ended is None else out[: ended + 1]
        assert result.token_ids == expected
        assert result.text == tokenizer.decode(expected, skip_special_tokens=True)
        assert result.finish_reason == ("stop" if ended is not None else "length")
        assert result.prompt_tokens == len(prompt) and result.completion_tokens == len(expected)
    engine.shutdown()


def test_batched_and_chunked_answers_equal_one_at_a_time(tiny_base, tiny_adapters, questions):
    """32 requests over the base and two adapters, small prefill chunks: each equals its sequential answer."""
    names = [None, "alpha", "beta"]
    sequential = make_engine(tiny_base, tiny_adapters, max_num_seqs=1, max_model_len=256)
    batched = make_engine(tiny_base, tiny_adapters, max_num_seqs=32, max_model_len=256, max_num_batched_tokens=40)
    jobs = [(questions[i % len(questions)], names[i % 3]) for i in range(32)]
    params = SamplingParams(max_tokens=24)
    expected = [sequential.generate([sequential.chat_prompt(q)], params, a)[0].token_ids for q, a in jobs]
    results: list[Completion] = [Completion() for _ in jobs]
    done = threading.Semaphore(0)
    for i, (q, a) in enumerate(jobs):

        def on_event(out, i=i):
            results[i].add(out)
            if out.finish_reason:
                done.release()

        batched.submit(batched.chat_prompt(q), params, on_event, a)
    for _ in jobs:
        assert done.acquire(timeout=120)
    assert [r.token_ids for r in results] == expected
    assert len({tuple(e) for e in expected}) > 3, "the adapters answer differently"
    sequential.shutdown()
    batched.shutdown()


def test_prompt_logprobs_match_an_independent_computation(tiny_base):
    engine = make_engine(tiny_base, max_num_batched_tokens=7)  # the prompt is read in chunks
    prompt = engine.tokenizer("The table finance.ledger is stale. What should I do first?")["input_ids"]
    (result,) = engine.generate([prompt], SamplingParams(max_tokens=1, prompt_logprobs=1, logprobs=2))
    model = AutoModelForCausalLM.from_pretrained(tiny_base).eval()
    with torch.no_grad():
        logprobs = torch.log_softmax(model(torch.tensor([prompt])).logits[0].float(), -1)
    assert result.prompt_logprobs[0] is None
    for j in range(1, len(prompt)):
        entry = result.prompt_logprobs[j]
        assert entry.token_id == prompt[j]
        assert entry.logprob == pytest.approx(float(logprobs[j - 1, prompt[j]]), abs=1e-4)
        assert entry.top[0][0] == int(logprobs[j - 1].argmax())
    generated = result.logprobs[0]
    assert generated.token_id == int(logprobs[-1].argmax()) and len(generated.top) == 2
    engine.shutdown()


def test_stop_strings_cut_the_answer_and_the_stream_never_takes_text_back(tiny_base, questions):
    engine = make_engine(tiny_base)
    prompt = engine.chat_prompt(questions[0])
    full = engine.generate([prompt], SamplingParams(max_tokens=48))[0].text
    stop = full[10:14]
    pieces, done = [], threading.Event()

    def on_event(out):
        pieces.append(out)
        if out.finish_reason:
            done.set()

    engine.submit(prompt, SamplingParams(max_tokens=48, stop=[stop]), on_event)
    assert done.wait(60)
    assert "".join(p.text for p in pieces) == full[: full.index(stop)]
    assert pieces[-1].finish_reason == "stop"
    engine.shutdown()


def test_detokenizer_holds_back_a_possible_stop_prefix_and_split_characters():
    class Chars:
        def decode(self, ids, skip_special_tokens=True):
            return "".join(chr(i) for i in ids)

    d = Detokenizer(Chars(), ["END"])
    assert d.update([ord(c) for c in "abcE"]) == ("abc", False)
    assert d.update([ord(c) for c in "abcEN"]) == ("", False)
    assert d.update([ord(c) for c in "abcENX"]) == ("ENX", False)
    assert d.update([ord(c) for c in "abcENXEND"]) == ("", True)
    assert Detokenizer(Chars(), []).update([ord("a"), 0xFFFD]) == ("a", False)


def test_end_tokens_min_tokens_and_max_tokens(tiny_base, questions):
    engine = make_engine(tiny_base)
    prompt = engine.chat_prompt(questions[0])
    tokens = engine.generate([prompt], SamplingParams(max_tokens=40))[0].token_ids
    k = next(i for i in range(3, len(tokens)) if tokens[i] not in tokens[:i])
    engine.eos_ids = {tokens[k]}  # pretend that token ends answers
    stopped = engine.generate([prompt], SamplingParams(max_tokens=40))[0]
    assert (stopped.token_ids, stopped.finish_reason) == (tokens[: k + 1], "stop")
    assert stopped.text == engine.tokenizer.decode(tokens[:k], skip_special_tokens=True)
    longer = engine.generate([prompt], SamplingParams(max_tokens=40, min_tokens=k + 5))[0]
    assert longer.completion_tokens >= k + 5 and tokens[k] not in longer.token_ids[: k + 5]
    short = engine.generate([prompt], SamplingParams(max_tokens=3))[0]
    assert (short.completion_tokens, short.finish_reason) == (3, "length")
    engine.shutdown()


def test_seeded_sampling_is_reproducible_and_top_p_keeps_the_nucleus():
    logits = torch.tensor([5.0, 4.0, 1.0, 0.0])
    p = SamplingParams(temperature=1.0, top_p=0.7, seed=3)
    gen = [torch.Generator().manual_seed(3) for _ in range(2)]
    draws = [[choose(logits, p, g) for _ in range(50)] for g in gen]
    assert draws[0] == draws[1]
    assert set(draws[0]) == {0}  # token 0 alone has 73% of the mass
    assert choose(logits, SamplingParams(), None) == 0


def test_queue_bound_timeout_cancel_and_refusals(tiny_base, tiny_adapters, questions):
    engine = make_engine(tiny_base, tiny_adapters, max_num_seqs=1, max_waiting=1, max_model_len=128)
    prompt = engine.chat_prompt(questions[0])
    events = {k: [] for k in ("long", "queued", "late")}
    long = engine.submit(prompt, SamplingParams(max_tokens=30, min_tokens=30), events["long"].append)
    engine.submit(prompt, SamplingParams(max_tokens=2), events["queued"].append)
    with pytest.raises(QueueFull):
        for _ in range(3):
            engine.submit(prompt, SamplingParams(max_tokens=2), events["late"].append)
    long.cancel()
    deadline = time.monotonic() + 60
    while not (events["queued"] and events["queued"][-1].finish_reason) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert events["long"][-1].finish_reason == "abort" and len(events["long"]) < 30
    assert events["queued"][-1].finish_reason in ("stop", "length")
    timed = engine.generate([prompt], SamplingParams(max_tokens=30, min_tokens=30, timeout_s=1e-6))[0]
    assert timed.finish_reason == "timeout"
    with pytest.raises(PromptTooLong, match="at most 128 tokens"):
        engine.submit(list(range(128)), SamplingParams(max_tokens=4), lambda out: None)
    with pytest.raises(UnknownAdapter):
        engine.submit(prompt, SamplingParams(), lambda out: None, adapter="gamma")
    assert engine.stats() == {"running": {}, "waiting": {}}
    engine.shutdown()


def test_adapters_load_and_unload_while_serving(tiny_base, tiny_adapters, questions):
    engine = make_engine(tiny_base)
    prompts = [engine.chat_prompt(q) for q in questions[:4]]
    prompt = prompts[1]
    base = [c.token_ids for c in engine.generate(prompts, SamplingParams(max_tokens=16))]
    engine.add_adapter("late", tiny_adapters["alpha"])
    with_adapter = [c.token_ids for c in engine.generate(prompts, SamplingParams(max_tokens=16), "late")]
    assert with_adapter != base and engine.adapters == ["late"]
    assert engine.remove_adapter("late") and engine.adapters == []
    assert not engine.remove_adapter("late")
    with pytest.raises(UnknownAdapter):
        engine.submit(prompt, SamplingParams(), lambda out: None, adapter="late")
    engine.shutdown()


def test_prefix_index_reuses_the_longest_shared_prefix():
    from tunewright.engine.prefix import MIN_REUSE, PrefixIndex

    index = PrefixIndex()
    prompt = list(range(40))
    index.remember(1, 0, [*list(range(30)), 99])  # a finished request's cache in free slot 1
    index.remember(2, 7, list(range(40)))  # same tokens, another adapter: not reusable
    assert index.place([0, 1, 2], [], prompt, adapter=0) == (1, None, 30)
    running = [(5, 0, [*list(range(39)), 1, 2])]  # a request in flight shares 39 tokens: copy them
    assert index.place([0, 1, 2], running, prompt, adapter=0) == (1, 5, 39)
    assert index.place([0, 2], [], prompt, adapter=0) == (0, None, 0)
    assert index.place([3], [(5, 0, list(range(MIN_REUSE - 1)))], prompt, 0) == (3, None, 0)  # too short to copy
    assert index.place([1], [], list(range(30)), adapter=0)[2] == 29  # the last prompt token is always computed


def test_prefix_caching_changes_no_answer_and_skips_the_shared_prompt(tiny_base, tiny_adapters, questions):
    system = {"role": "system", "content": "You answer platform support questions for the data team, briefly. " * 3}
    jobs = [([system, q[-1]], a) for q in questions[:6] for a in (None, "alpha")]
    answers = {}
    for caching in (False, True):
        engine = make_engine(tiny_base, tiny_adapters, max_num_seqs=4, max_model_len=256, prefix_caching=caching)
        prompts = [engine.chat_prompt(m) for m, _ in jobs]
        answers[caching] = [
            engine.generate([p], SamplingParams(max_tokens=16), a)[0].token_ids
            for p, (_, a) in zip(prompts, jobs, strict=True)
        ]
        reused = engine.reused_tokens
        engine.shutdown()
    assert answers[True] == answers[False]
    shared = len(make_engine(tiny_base).chat_prompt([system]))
    assert reused >= (len(jobs) - 2) * (shared - 8)  # after the first request per adapter, the system prompt is reused


def test_choices_constrain_the_answer_and_follow_the_models_preference(tiny_base, questions):
    engine = make_engine(tiny_base, max_num_seqs=4, max_model_len=256)
    tok = engine.tokenizer
    texts = ["Escalate: yes", "First step: check", "banana split"]
    choices = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    prompt = engine.chat_prompt(questions[0])
    greedy = engine.generate([prompt], SamplingParams(max_tokens=20, choices=choices))[0]
    assert greedy.text in texts and greedy.finish_reason == "stop"
    scored = engine.generate([prompt + c for c in choices], SamplingParams(max_tokens=0, prompt_logprobs=0))
    first = [s.prompt_logprobs[len(prompt)].logprob for s in scored]  # each choice's first token
    assert greedy.text == texts[first.index(max(first))]  # the model's own preference among the choices
    sampled = engine.generate([prompt] * 8, SamplingParams(max_tokens=20, choices=choices, temperature=1.5, seed=3))
    assert all(c.text in texts and c.finish_reason == "stop" for c in sampled)
    nested = [tok(t, add_special_tokens=False)["input_ids"] for t in ("First", "First step")]
    out = engine.generate([prompt], SamplingParams(max_tokens=20, choices=nested))[0]
    assert out.text in ("First", "First step") and out.finish_reason == "stop"
    engine.shutdown()


def test_background_work_advances_in_one_step_of_every_while_others_run(tiny_base, tiny_adapters, questions):
    engine = make_engine(tiny_base, {"alpha": tiny_adapters["alpha"]}, max_num_seqs=4, max_model_len=256)
    prompts = [engine.chat_prompt(q) for q in questions[:3]]
    alone = engine.generate([prompts[2]], SamplingParams(max_tokens=24, min_tokens=24), adapter="alpha")[0]
    events: dict[str, list[int]] = {"fg": [], "bg": []}
    steps = {"fg": [], "bg": []}
    done = threading.Semaphore(0)

    def on(kind):
        def event(out):
            if out.token_ids:
                events[kind] += out.token_ids
                steps[kind].append(engine._steps)
            if out.finish_reason is not None:
                done.release()

        return event

    assert engine._claim_inline()
    try:
        for prompt in prompts[:2]:
            engine.submit(prompt, SamplingParams(max_tokens=16, min_tokens=16), on("fg"))
        engine.submit(prompts[2], SamplingParams(max_tokens=24, min_tokens=24), on("bg"), "alpha", every=4)
        while len(events["bg"]) < 24:
            engine._turn(wait=False)
    finally:
        engine._release_inline()
    for _ in range(3):
        done.acquire()
    busy = [s for s in steps["bg"] if s <= max(steps["fg"])]
    assert busy and all(s % 4 == 0 for s in busy)  # while production ran: one step in four
    assert len(steps["bg"]) - len(busy) > len(busy)  # then every step
    assert events["bg"] == alone.token_ids  # pacing changes nothing in the answer
    engine.shutdown()
