"""Shadow traffic through the real server: the candidate adapter answers mirrored requests unseen, its answers land
in the capture beside production's, and its load is bounded by max_inflight."""

import time
from contextlib import closing

import httpx
import openai
import pytest
from transformers import AutoModelForCausalLM

from conftest import concurrently
from tunewright.core import capture_store as store
from tunewright.core.modeling import load_tokenizer
from tunewright.engine import Engine, EngineConfig
from tunewright.serve.app import BackgroundServer, create_app
from tunewright.serve.capture import Capture
from tunewright.serve.config import CaptureConfig, ServeConfig, ShadowConfig
from tunewright.serve.service import Served


def _serve(tiny_base, tiny_adapters, tmp_path, shadow: ShadowConfig | None):
    def load():
        model = AutoModelForCausalLM.from_pretrained(tiny_base)
        engine = Engine(model, load_tokenizer(tiny_base), EngineConfig(max_num_seqs=8), tiny_adapters)
        return engine, Served("tiny", str(tiny_base))

    capture = Capture(CaptureConfig(enabled=True), tmp_path / "capture.sqlite", "capture-test", {"tiny": "v1"})
    adapters = {name: str(path) for name, path in tiny_adapters.items()}
    cfg = ServeConfig(max_new_tokens=16, adapters=adapters, capture=CaptureConfig(enabled=True))
    if shadow is not None:
        cfg = cfg.model_copy(update={"shadow": shadow})
    return create_app(load, cfg, capture=capture), capture


def _counts(server) -> dict[str, float]:
    """tunewright_shadow_requests_total by outcome."""
    metrics = httpx.get(f"{server.base_url.removesuffix('/v1')}/metrics").text
    return {
        line.split('outcome="')[1].split('"')[0]: float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("tunewright_shadow_requests_total{")
    }


def _ask(client, i):
    return client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": f"Is table t{i} stale?"}], max_tokens=12, temperature=0
    )


def test_the_candidate_answers_in_the_shadow_and_production_answers_unchanged(tiny_base, tiny_adapters, tmp_path):
    plain_app, plain_capture = _serve(tiny_base, tiny_adapters, tmp_path / "plain", None)
    with BackgroundServer(plain_app) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
        expected = [_ask(client, i).choices[0].message.content for i in range(4)]
    plain_capture.close()

    app, capture = _serve(
        tiny_base, tiny_adapters, tmp_path, ShadowConfig(candidate="alpha", share=1.0, max_inflight=4)
    )
    with BackgroundServer(app) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
        replies = [_ask(client, i) for i in range(4)]
        assert [r.choices[0].message.content for r in replies] == expected  # the shadow changes no answer
        assert {r.model for r in replies} == {"tiny"}
        client.chat.completions.create(model="beta", messages=[{"role": "user", "content": "hi"}], max_tokens=4)
        deadline = time.monotonic() + 60
        while _counts(server).get("answered", 0) < 4:  # paced behind production, shadows finish later
            assert time.monotonic() < deadline
            time.sleep(0.1)
    capture.close()
    with closing(store.connect(tmp_path / "capture.sqlite", readonly=True)) as conn:
        rows = list(store.read_requests(conn))
    shadows = [r for r in rows if r["route"] == "chat.completions.shadow"]
    production = {r["id"]: r for r in rows if r["route"] == "chat.completions"}
    assert len(shadows) == 4  # every request to `tiny`, none of those to another name
    for row in shadows:
        origin = production[row["request"]["shadow_of"]]
        assert row["id"] == f"{origin['id']}-shadow" and row["model"] == "alpha" and row["adapter"] == "alpha"
        assert row["request"]["messages"] == origin["request"]["messages"] and row["status"] == 200
        assert row["response"]["choices"][0]["finish_reason"] in ("stop", "length")


def test_shadow_load_is_bounded_by_max_inflight(tiny_base, tiny_adapters, tmp_path):
    app, capture = _serve(tiny_base, tiny_adapters, tmp_path, ShadowConfig(candidate="alpha", share=1.0))
    with BackgroundServer(app) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
        concurrently(lambda i: _ask(client, i), 8)
        deadline = time.monotonic() + 60
        while sum((counts := _counts(server)).values()) < 8:  # the last shadow may still be generating
            assert time.monotonic() < deadline
            time.sleep(0.1)
    capture.close()
    assert counts.get("busy", 0) >= 1  # with one shadow slot, concurrent requests found it taken
    assert counts.get("answered", 0) + counts.get("busy", 0) == 8


def test_shadow_config_needs_a_served_candidate_and_capture():
    with pytest.raises(ValueError, match="not one of the served adapters"):
        ServeConfig(shadow=ShadowConfig(candidate="nope"), capture=CaptureConfig(enabled=True))
    with pytest.raises(ValueError, match=r"capture\.enabled=true"):
        ServeConfig(adapters={"alpha": "a"}, shadow=ShadowConfig(candidate="alpha"))


def test_each_shadow_slot_gets_a_kv_slot_beyond_production_s():
    plain = ServeConfig(batching={"max_num_seqs": 32})
    shadowed = ServeConfig(
        batching={"max_num_seqs": 32},
        adapters={"alpha": "a"},
        capture=CaptureConfig(enabled=True),
        shadow=ShadowConfig(candidate="alpha", max_inflight=2),
    )
    assert plain.engine_config().max_num_seqs == 32
    assert shadowed.engine_config().max_num_seqs == 34  # production keeps its 32 whatever the shadow does
