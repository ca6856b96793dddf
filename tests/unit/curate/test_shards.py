"""Sharded curation pieces: shard plans, ranged reading, the components of a pair graph, histograms."""

from __future__ import annotations

import json
import random
from collections import Counter

import numpy as np

from tunewright.core.io import iter_jsonl
from tunewright.curate.dedup.minhash import connected_components
from tunewright.curate.result import length_summary
from tunewright.curate.shards.plan import ShardIndex, order_key, plan_shards, split_order
from tunewright.curate.shards.stages import connected_heads


def _lines(path):
    return [(line.lineno, line.value, line.error) for line in iter_jsonl(path)]


def test_shards_cover_every_line_once_with_its_line_number(tmp_path):
    rng = random.Random(1)
    rows = [json.dumps({"i": i, "pad": "x" * rng.randrange(0, 300)}) for i in range(500)]
    rows[17] = "{broken"
    rows[90] = ""
    path = tmp_path / "a.jsonl"
    path.write_text("\n".join(rows) + "\n")
    whole = _lines(path)
    for world, shard_bytes in ((1, 1 << 30), (3, 1 << 30), (7, 1 << 30), (1, 4096)):
        shards = plan_shards([(0, path, "jsonl")], world, shard_bytes)
        assert len(shards) >= min(world, 500)
        assert [(s.start, s.first_line) for s in shards] == sorted((s.start, s.first_line) for s in shards)
        read = [(line.lineno, line.value, line.error) for s in shards for line in s.lines()]
        assert read == whole


def test_a_file_without_a_final_newline_and_tiny_files_plan_cleanly(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text('{"i": 1}\n{"i": 2}')
    shards = plan_shards([(0, path, "jsonl")], 7, 1 << 30)
    assert [line.value for s in shards for line in s.lines()] == [{"i": 1}, {"i": 2}]
    other = tmp_path / "b.csv"
    other.write_text("prompt,response\nq,a\n")
    both = plan_shards([(0, path, "jsonl"), (1, other, "csv")], 2, 1 << 30)
    assert both[-1].format == "csv" and both[-1].source_index == 1


def test_order_keys_sort_in_input_order_and_find_their_shard(tmp_path):
    assert split_order(order_key(3, 12345)) == (3, 12345)
    assert order_key(0, 999_999) < order_key(1, 1)
    path = tmp_path / "a.jsonl"
    path.write_text("".join(json.dumps({"i": i}) + "\n" for i in range(100)))
    shards = plan_shards([(0, path, "jsonl")], 4, 1 << 30)
    index = ShardIndex(shards)
    for s in shards:
        for line in s.lines():
            assert index.shard_of(order_key(0, line.lineno)) == s.index


def test_min_label_propagation_matches_union_find():
    rng = np.random.default_rng(0)
    for _ in range(20):
        n = 200
        pairs = np.unique(np.sort(rng.integers(0, n, size=(60, 2)), axis=1), axis=0)
        pairs = pairs[pairs[:, 0] != pairs[:, 1]]
        labels = connected_components(n, pairs)
        nodes, heads = connected_heads(pairs * 1000 + 7)  # any int64 order keys, not 0..n-1
        assert dict(zip(nodes.tolist(), heads.tolist(), strict=True)) == {
            int(i) * 1000 + 7: int(labels[i]) * 1000 + 7 for i in np.unique(pairs)
        }
    nodes, heads = connected_heads(np.zeros((0, 2), dtype=np.int64))
    assert len(nodes) == len(heads) == 0


def test_length_summary_of_a_histogram_equals_that_of_the_list():
    rng = random.Random(3)
    for size in (1, 2, 19, 200):
        values = [rng.randrange(0, 40) for _ in range(size)]
        assert length_summary(Counter(values)) == length_summary(values)
    assert length_summary(Counter()) == length_summary([])
