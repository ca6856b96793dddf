"""Sequence packing: several examples per row, with no attention across examples.

Examples are placed first-fit in input order into rows of at most `max_length` tokens.
A packed batch carries `position_ids` that restart at 0 for every example and no 2D
attention mask; transformers reads the restarts as sequence boundaries and builds a
block-diagonal causal mask (eager / SDPA) or uses variable-length kernels (flash
attention), so an example attends only to itself. The first token of each example gets
no label: in a packed row it would otherwise be "predicted" from the previous example's
last token, which the unpacked example never is. Rows of one batch are right-padded;
the padding is its own position run, attended only by itself, and never labelled.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from tunewright.train.data import IGNORE, Example


@dataclass
class PackedRow:
    examples: list[Example] = field(default_factory=list)

    @property
    def length(self) -> int:
        return sum(len(e.input_ids) for e in self.examples)

    @property
    def targets(self) -> int:
        return sum(e.targets for e in self.examples)


def pack(examples: list[Example], max_length: int) -> list[PackedRow]:
    """First-fit packing in input order (deterministic)."""
    rows: list[PackedRow] = []
    room: list[int] = []
    for ex in examples:
        n = len(ex.input_ids)
        slot = next((i for i, free in enumerate(room) if free >= n), None)
        if slot is None:
            rows.append(PackedRow())
            room.append(max_length)
            slot = len(rows) - 1
        rows[slot].examples.append(ex)
        room[slot] -= n
    return rows


def collate_packed(rows: list[PackedRow], pad_id: int) -> dict[str, torch.Tensor]:
    """input_ids, labels and restarting position_ids for a batch of packed rows."""
    width = max(r.length for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    positions = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        at = 0
        for ex in row.examples:
            n = len(ex.input_ids)
            ids[i, at : at + n] = torch.tensor(ex.input_ids)
            labels[i, at + 1 : at + n] = torch.tensor(ex.labels[1:])
            positions[i, at : at + n] = torch.arange(n)
            at += n
        positions[i, at:] = torch.arange(width - at)
    return {"input_ids": ids, "labels": labels, "position_ids": positions}
