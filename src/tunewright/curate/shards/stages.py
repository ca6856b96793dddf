"""The stages of a sharded curation: each task reads files, writes files, and keeps no state.

Per shard: `map` (read, normalise and the per-record steps), `fuzzy_bands` (LSH band keys),
`decontam_count`, `rank` and `assemble`. Per partition (records hashed by key): `ids`
(repeated ids), `exact` (identical content), `fuzzy_pairs` (candidate pairs from shared band
buckets, verified by Jaccard when configured). Single tasks over small inputs:
`fuzzy_components` (clusters of the candidate graph, by min-label propagation with pointer
jumping: memory follows the duplicates, not the corpus), `decontam_ignored` and `bounds`.

Every decision (keep, drop as a duplicate of X, split) is a function of the records and
their order keys alone, so any partitioning gives the same output, byte for byte, as one
process reading the sources in order: the kept copy of a duplicate and the head of a
cluster are the lowest order key, and splits follow the seeded rank of each group.
"""

from __future__ import annotations

import hashlib
import heapq
import json
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tunewright.core.records import Conversation
from tunewright.curate.decontaminate import HITS
from tunewright.curate.dedup.exact import content_key
from tunewright.curate.dedup.fuzzy import BATCH
from tunewright.curate.dedup.minhash import band_keys_for, verify_pairs
from tunewright.curate.pipeline import Quarantine, chain
from tunewright.curate.result import KeptRecords, word_lengths
from tunewright.curate.shards.plan import order_key, split_order
from tunewright.curate.shards.store import RecordWriter, dump_pickle, load_pickle, read_records
from tunewright.curate.sources import read_source
from tunewright.curate.split import group_key, rank_digest

if TYPE_CHECKING:
    from tunewright.curate.shards.job import Job

SPLITS = ("train", "validation", "test")
PAIR = np.dtype([("a", "<i8"), ("b", "<i8")])
KEYED = np.dtype([("key", "<u8"), ("order", "<i8")])
EXACT = np.dtype([("key", "S16"), ("order", "<i8")])


def _save_partitioned(out: Path, name: str, rows: np.ndarray, part: np.ndarray, partitions: int) -> None:
    for p in range(partitions):
        np.save(out / f"{name}.p{p}.npy", rows[part == p])


def _id_hash(rid: str) -> int:
    return int.from_bytes(hashlib.blake2b(rid.encode("utf-8"), digest_size=8).digest(), "little")


def map_shard(job: Job, index: int, out: Path) -> None:
    """Read one shard through the per-record steps; keep the survivors and the keys the global steps need."""
    shard = job.shards[index]
    source = job.sources[shard.source_index]
    steps = job.per_record_steps()
    quarantine = Quarantine(out / "quarantine", keep=0, scrub=job.scrub())
    counts: dict[str, int] = {}
    ids: list[tuple[int, str]] = []

    def records() -> Iterator[Conversation]:
        for rec in read_source(source, Path(shard.path), quarantine, counts, None, shard.lines()):
            ids.append((order_key(shard.source_index, rec.meta["line"]), rec.id))
            yield rec

    exact: list[tuple[bytes, int]] = []
    try:
        with RecordWriter(out) as writer:
            for rec in chain(records(), steps, quarantine):
                order = order_key(shard.source_index, rec.meta["line"])
                writer.add(order, rec, rec.id in quarantine.modified_ids)
                if job.exact:
                    exact.append((content_key(rec), order))
    finally:
        quarantine.close()
    id_rows = np.array([(_id_hash(rid), order) for order, rid in ids], dtype=KEYED)
    _save_partitioned(out, "ids", id_rows, id_rows["key"] % job.partitions, job.partitions)
    with (out / "ids.jsonl").open("w", encoding="utf-8") as fh:
        fh.writelines(json.dumps([order, rid], ensure_ascii=False) + "\n" for order, rid in ids)
    if job.exact:
        rows = np.array(exact, dtype=EXACT)
        part = np.array([int.from_bytes(k[:8], "little") % job.partitions for k, _ in exact], dtype=np.int64)
        _save_partitioned(out, "exact", rows, part, job.partitions)
    tally = {
        "lines": counts,
        "steps": [s.tallies() for s in steps],
        "quarantine": quarantine.tally,
        "modified": len(quarantine.modified_ids),
    }
    dump_pickle(out / "tally.pkl", tally)


def ids_partition(job: Job, index: int, out: Path) -> None:
    """Ids given to more than one record: the first (in input order) keeps it, the others get `@<source>:<line>`."""
    rows = np.concatenate([np.load(d / f"ids.p{index}.npy") for d in job.task_dirs("map")])
    rows = rows[np.lexsort((rows["order"], rows["key"]))]
    repeated = np.zeros(len(rows), dtype=bool)
    if len(rows) > 1:
        same = rows["key"][1:] == rows["key"][:-1]
        repeated[1:] |= same
        repeated[:-1] |= same
    candidates = rows["order"][repeated].tolist()
    ids = _ids_of(job, candidates)
    seen: set[str] = set()
    renames: dict[int, str] = {}
    for order in sorted(candidates):
        rid = ids[order]
        if rid in seen:
            source_index, line = split_order(order)
            renames[order] = f"{rid}@{job.sources[source_index].name}:{line}"
        seen.add(rid)
    dump_pickle(out / "renames.pkl", renames)


def _ids_of(job: Job, orders: list[int]) -> dict[int, str]:
    """The ids read for these records (kept or not), from the shards that hold them."""
    wanted: dict[int, set[int]] = {}
    for order in orders:
        wanted.setdefault(job.shard_of(order), set()).add(order)
    found: dict[int, str] = {}
    for shard, members in wanted.items():
        with (job.task_dir("map", shard) / "ids.jsonl").open(encoding="utf-8") as fh:
            for line in fh:
                order, rid = json.loads(line)
                if order in members:
                    found[order] = rid
    return found


def exact_partition(job: Job, index: int, out: Path) -> None:
    """Records whose content key an earlier record (in input order) has: (order, order of that first record)."""
    rows = np.concatenate([np.load(d / f"exact.p{index}.npy") for d in job.task_dirs("map")])
    rows = rows[np.lexsort((rows["order"], rows["key"]))]
    n = len(rows)
    new = np.ones(n, dtype=bool)
    new[1:] = rows["key"][1:] != rows["key"][:-1]
    head = rows["order"][np.maximum.accumulate(np.where(new, np.arange(n), 0))] if n else rows["order"]
    removed = np.zeros(int((~new).sum()), dtype=PAIR)
    removed["a"], removed["b"] = rows["order"][~new], head[~new]
    _save_by_shard(job, out, removed)


def _save_by_shard(job: Job, out: Path, rows: np.ndarray) -> None:
    shard = job.shard_of_many(rows["a"])
    for s in range(len(job.shards)):
        np.save(out / f"s{s}.npy", rows[shard == s])


def _decisions(job: Job, stage: str, shard: int) -> dict[int, int]:
    """order -> order of the record it defers to, from every task of a decision stage, for one shard."""
    if not job.has(stage):
        return {}
    rows = [np.load(d / f"s{shard}.npy") for d in job.task_dirs(stage)]
    return dict(zip(*(np.concatenate(rows)[f].tolist() for f in ("a", "b")), strict=True))


def fuzzy_bands(job: Job, index: int, out: Path) -> None:
    """LSH band keys of the shard's records that survived exact dedup, bucketed by key, a batch at a time."""
    params = job.fuzzy_params()
    removed = _decisions(job, "exact", index)
    orders: list[int] = []
    texts: list[str] = []
    batch = 0
    for order, rec, _ in read_records(job.task_dir("map", index)):
        if order in removed:
            continue
        orders.append(order)
        texts.append(rec.text())
        if len(texts) == BATCH:
            _write_bands(job, out, batch, band_keys_for(texts, params), np.array(orders, dtype=np.int64))
            orders, texts, batch = [], [], batch + 1
    if texts or not batch:
        keys = band_keys_for(texts, params) if texts else np.zeros((0, params.bands), dtype=np.uint64)
        _write_bands(job, out, batch, keys, np.array(orders, dtype=np.int64))


def _write_bands(job: Job, out: Path, batch: int, keys: np.ndarray, orders: np.ndarray) -> None:
    """One batch's (key, order) rows per partition, band after band, with where each band starts."""
    part = keys % np.uint64(job.partitions)
    for p in range(job.partitions):
        chunks, starts = [], [0]
        for band in range(keys.shape[1]):
            sel = part[:, band] == p
            rows = np.zeros(int(sel.sum()), dtype=KEYED)
            rows["key"], rows["order"] = keys[sel, band], orders[sel]
            chunks.append(rows)
            starts.append(starts[-1] + len(rows))
        np.save(out / f"bands.p{p}.k{batch}.npy", np.concatenate(chunks))
        np.save(out / f"starts.p{p}.k{batch}.npy", np.array(starts, dtype=np.int64))


def fuzzy_pairs(job: Job, index: int, out: Path) -> None:
    """Candidate pairs of one partition's band buckets, one band at a time (a star on each bucket's first record)."""
    params = job.fuzzy_params()
    parts = [
        (np.load(f, mmap_mode="r"), np.load(f.with_name(f.name.replace("bands.", "starts.", 1))))
        for d in job.task_dirs("fuzzy_bands")
        for f in sorted(d.glob(f"bands.p{index}.k*.npy"), key=lambda f: int(f.name.split(".k")[1].split(".")[0]))
    ]
    pairs: list[np.ndarray] = []
    for band in range(params.bands):
        rows = np.concatenate([np.asarray(r[s[band] : s[band + 1]]) for r, s in parts])
        rows = rows[np.lexsort((rows["order"], rows["key"]))]
        n = len(rows)
        if n < 2:
            continue
        new = np.ones(n, dtype=bool)
        new[1:] = rows["key"][1:] != rows["key"][:-1]
        head = rows["order"][np.maximum.accumulate(np.where(new, np.arange(n), 0))]
        pairs.append(np.stack([head[~new], rows["order"][~new]], axis=1))
    found = np.unique(np.concatenate(pairs), axis=0) if pairs else np.zeros((0, 2), dtype=np.int64)
    if params.jaccard_threshold is not None and len(found):
        records = job.lookup("map").fetch(np.unique(found).tolist())
        found = verify_pairs(found, {o: r.text() for o, r in records.items()}, params)
    np.save(out / "pairs.npy", found.astype(np.int64))


def connected_heads(pairs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(nodes, the smallest node of each one's component) of the graph `pairs`, by min-label propagation."""
    nodes, inverse = np.unique(pairs.ravel(), return_inverse=True)
    u, v = inverse[0::2], inverse[1::2]
    labels = np.arange(len(nodes))
    while True:
        hooked = labels.copy()
        low = np.minimum(labels[u], labels[v])
        np.minimum.at(hooked, u, low)
        np.minimum.at(hooked, v, low)
        while not np.array_equal(jumped := hooked[hooked], hooked):  # pointer jumping: labels point at roots
            hooked = jumped
        if np.array_equal(hooked, labels):
            return nodes, nodes[labels]
        labels = hooked


def fuzzy_components(job: Job, index: int, out: Path) -> None:
    """Near-duplicate clusters: each node of the verified candidate graph with its cluster's head (lowest order)."""
    pairs = np.concatenate([np.load(d / "pairs.npy") for d in job.task_dirs("fuzzy_pairs")])
    nodes, heads = connected_heads(pairs)
    rows = np.zeros(len(nodes), dtype=PAIR)
    rows["a"], rows["b"] = nodes, heads
    _save_by_shard(job, out, rows)


class Survivors:
    """A shard's records with the global decisions made so far applied (ids, exact, fuzzy, decontamination)."""

    def __init__(self, job: Job, shard: int, ignored: dict[str, int] | None = None) -> None:
        self.job, self.shard = job, shard
        self.renames = job.renames()
        self.exact = _decisions(job, "exact", shard)
        self.fuzzy = _decisions(job, "fuzzy_components", shard)
        self.ignored = ignored

    def records(self) -> Iterator[tuple[int, Conversation, bool, str | None, int | None]]:
        """(order, record, modified, why removed (a step name) or None, the order it defers to)."""
        for order, rec, modified in read_records(self.job.task_dir("map", self.shard)):
            rec.id = self.renames.get(order, rec.id)
            if order in self.exact:
                yield order, rec, modified, "exact_dedup", self.exact[order]
            elif self.fuzzy.get(order, order) != order:
                yield order, rec, modified, "fuzzy_dedup", self.fuzzy[order]
            else:
                if order in self.fuzzy:
                    rec.meta["cluster"] = rec.id
                gone = self.ignored is not None and any(g not in self.ignored for g in rec.meta.get(HITS) or [])
                yield order, rec, modified, "decontaminate" if gone else None, None


def decontam_count(job: Job, index: int, out: Path) -> None:
    """How many surviving records hold each matched eval n-gram, in this shard."""
    counts: Counter[str] = Counter()
    for _, rec, _, removed, _ in Survivors(job, index).records():
        if removed is None:
            counts.update(rec.meta.get(HITS) or [])
    dump_pickle(out / "counts.pkl", counts)


def decontam_ignored(job: Job, index: int, out: Path) -> None:
    """Matched n-grams over all shards; those in more than max_matches records are common phrasing, ignored."""
    frequency: Counter[str] = Counter()
    for d in job.task_dirs("decontam_count"):
        frequency.update(load_pickle(d / "counts.pkl"))
    limit = job.cfg.decontaminate.max_matches
    ignored = {g: n for g, n in frequency.items() if limit is not None and n > limit}
    dump_pickle(out / "ignored.pkl", {"frequency": frequency, "ignored": ignored})


def rank(job: Job, index: int, out: Path) -> None:
    """The shard's kept split groups, sorted by their seeded rank, with their sizes."""
    groups: Counter[bytes] = Counter()
    for _, rec, _, removed, _ in Survivors(job, index, job.ignored()).records():
        if removed is None:
            groups[rank_digest(job.cfg.split.seed, group_key(rec))] += 1
    ranks = sorted(groups)
    np.save(out / "ranks.npy", np.array(ranks, dtype="S32"))
    np.save(out / "sizes.npy", np.array([groups[r] for r in ranks], dtype=np.int64))


def _merged_groups(job: Job) -> Iterator[tuple[bytes, int]]:
    """(rank, size) of every kept group over all shards, in rank order (one group may span shards)."""
    streams = []
    for d in job.task_dirs("rank"):
        ranks, sizes = np.load(d / "ranks.npy", mmap_mode="r"), np.load(d / "sizes.npy", mmap_mode="r")
        streams.append(zip((_digest(r) for r in ranks), (int(s) for s in sizes), strict=True))
    current, size = None, 0
    for r, s in heapq.merge(*streams):
        if r != current and current is not None:
            yield current, size
            size = 0
        current, size = r, size + s
    if current is not None:
        yield current, size


def bounds(job: Job, index: int, out: Path) -> None:
    """Which groups go to test and validation: `split.assign_splits`'s fill, over the merged ranks."""
    total = sum(int(np.load(d / "sizes.npy").sum()) for d in job.task_dirs("rank"))
    split = job.cfg.split
    targets = {"test": round(total * split.test), "validation": round(total * split.validation)}
    filled = {"test": 0, "validation": 0}
    chosen: dict[str, list[bytes]] = {"test": [], "validation": []}
    for r, size in _merged_groups(job):
        if filled == targets:
            break
        name = next((s for s in ("test", "validation") if filled[s] + size <= targets[s]), None)
        if name is not None:
            filled[name] += size
            chosen[name].append(r)
    for name, ranks in chosen.items():
        np.save(out / f"{name}.npy", np.array(ranks, dtype="S32"))


def _eval_items(job: Job, rec: Conversation) -> list[str]:
    """The eval items whose distinctive n-grams the record holds (what `Decontaminate` removes it for)."""
    ignored, index = job.ignored() or {}, job.eval_index()
    return sorted({i for g in rec.meta[HITS] if g not in ignored for i in index.grams[tuple(g.split(" "))]})


def _reason(job: Job, step: str, rec: Conversation, head_id: Callable[[int], str], head: int | None) -> str:
    if step == "decontaminate":
        return f"contains {job.eval_index().n}-gram(s) of eval item(s) {', '.join(_eval_items(job, rec))}"
    what = "duplicate" if step == "exact_dedup" else "near duplicate"
    return f"{what} of {head_id(head)}"  # type: ignore[arg-type]


STAT_REASONS = {"fuzzy_dedup": "near duplicate", "decontaminate": "eval n-gram"}


def assemble(job: Job, index: int, out: Path) -> None:
    """The shard's part of the outputs: kept records with each one's split, quarantine entries, tallies."""
    quarantine = Quarantine(out / "quarantine", keep=0, scrub=job.scrub())
    survivors = Survivors(job, index, job.ignored() if job.has("decontam_ignored") else None)
    _requarantine(job, index, survivors.renames, out / "quarantine")
    assigned = {name: np.load(job.task_dir("bounds", 0) / f"{name}.npy") for name in ("test", "validation")}
    heads: dict[int, str] = {}
    lookup = job.lookup("map")

    def head_id(order: int) -> str:
        if order not in heads:
            heads[order] = survivors.renames.get(order) or lookup.fetch([order])[order].id
        return heads[order]

    kept = KeptRecords()
    lengths = {name: {"prompt_words": Counter(), "answer_words": Counter()} for name in SPLITS}
    stats = {step: {"in": 0, "out": 0, "reasons": Counter()} for step in job.global_steps()}
    matches: dict[str, list[str]] = {}
    curated = (out / "curated.jsonl").open("w", encoding="utf-8")
    split_of: list[int] = []
    try:
        for _, rec, modified, removed, head in survivors.records():
            for step in stats:
                stats[step]["in"] += 1
                if step == removed:
                    reason = _reason(job, step, rec, head_id, head)
                    stats[step]["reasons"][STAT_REASONS.get(step, reason.split(":")[0])] += 1
                    if step == "decontaminate":
                        matches[rec.id] = _eval_items(job, rec)
                    rec.meta.pop(HITS, None)
                    quarantine.add(step, reason, rec)
                    break
                stats[step]["out"] += 1
            if removed is not None:
                continue
            rec.meta.pop(HITS, None)
            line = json.dumps(rec.to_dict(), ensure_ascii=False) + "\n"
            digest = rank_digest(job.cfg.split.seed, group_key(rec))
            name = next((n for n in ("test", "validation") if _member(assigned[n], digest)), "train")
            curated.write(line)
            split_of.append(SPLITS.index(name))
            kept.count(rec, modified)
            prompt, answer = word_lengths(rec)
            lengths[name]["prompt_words"][prompt] += 1
            lengths[name]["answer_words"][answer] += 1
    finally:
        quarantine.close()
        curated.close()
    np.save(out / "splits.npy", np.array(split_of, dtype=np.uint8))
    dump_pickle(
        out / "tally.pkl",
        {"kept": kept, "lengths": lengths, "steps": stats, "quarantine": quarantine.tally, "matches": matches},
    )


def _digest(value: np.bytes_) -> bytes:
    """A rank digest read back from an S32 array (NumPy drops trailing NUL bytes; they sort as if present)."""
    return bytes(value).ljust(32, b"\0")


def _member(sorted_ranks: np.ndarray, digest: bytes) -> bool:
    pos = int(np.searchsorted(sorted_ranks, np.bytes_(digest)))
    return pos < len(sorted_ranks) and _digest(sorted_ranks[pos]) == digest


def _requarantine(job: Job, shard: int, renames: dict[int, str], target: Path) -> None:
    """The map's quarantine entries of this shard, with the final id of records whose id was repeated."""
    source_index = job.shards[shard].source_index
    for path in sorted((job.task_dir("map", shard) / "quarantine").glob("*.jsonl")):
        with path.open(encoding="utf-8") as src, (target / path.name).open("a", encoding="utf-8") as dst:
            for line in src:
                entry = json.loads(line) if renames else None
                order = order_key(source_index, entry["line"]) if entry and entry.get("line") else None
                if order in renames:
                    entry["id"] = renames[order]
                    if isinstance(entry.get("record"), dict):
                        entry["record"]["id"] = renames[order]
                    line = json.dumps(entry, ensure_ascii=False) + "\n"
                dst.write(line)
