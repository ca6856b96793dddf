"""LoraSet's grouping of a batch's rows by adapter, and the deltas it adds, against a row-by-row reference."""

import torch

from tunewright.engine.lora import LoraSet, LoraWeights


def _set() -> LoraSet:
    lora = LoraSet({"q_proj": (8, 6)}, layers=1, dtype=torch.float32, device=torch.device("cpu"))
    gen = torch.Generator().manual_seed(0)
    for index in (1, 2):
        weights = LoraWeights(torch.randn(2, 8, generator=gen), torch.randn(6, 2, generator=gen))
        lora.weights[index] = {(0, "q_proj"): weights}
    return lora


def test_groups_are_every_row_a_run_of_rows_or_indices():
    lora = _set()
    assert lora.groups(torch.tensor([1, 1, 1])) == [(1, None)]
    groups = dict(lora.groups(torch.tensor([0, 2, 2, 1, 0, 1])))
    assert groups[2] == slice(1, 3)  # consecutive: a view, no gather
    assert groups[1].tolist() == [3, 5]
    assert lora.groups(torch.tensor([0, 0])) == []


def test_every_grouping_adds_the_same_deltas_as_row_by_row():
    lora = _set()
    for ids in ([1, 1, 1, 1], [0, 1, 0, 0], [2, 2, 0, 1], [1, 0, 2, 1], [0, 0, 0, 0]):
        adapter_ids = torch.tensor(ids)
        x = torch.randn(4, 8)
        out = torch.randn(4, 6)
        expected = out.clone()
        for row, a in enumerate(ids):
            if a:
                w = lora.weights[a][(0, "q_proj")]
                expected[row] += x[row] @ w.a.T @ w.b.T
        lora.apply(0, "q_proj", x, out, lora.groups(adapter_ids))
        assert torch.allclose(out, expected, atol=1e-5), ids
