"""What letter and cloze scoring share in a forward pass: padding a batch, the tokens every prompt starts with,
and their key/value cache, run once per call and repeated per row."""

from __future__ import annotations

import os

MIN_SHARED_PREFIX = 8  # shorter shared starts save less than copying their cache per batch costs


def start_cache(model, ids, device):
    """The key/value cache of the tokens every prompt starts with, or None for a forward that returns legacy
    tuples (they cannot be repeated per row)."""
    import torch

    cache = model(input_ids=torch.tensor([ids], device=device), use_cache=True, logits_to_keep=1).past_key_values
    return cache if hasattr(cache, "batch_repeat_interleave") else None


def pad_batch(seqs: list[list[int]], pad_id: int, padding_side: str = "left"):
    """input_ids, attention_mask and position_ids (counting real tokens only) for a batch."""
    import torch

    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for r, s in enumerate(seqs):
        sl = slice(width - len(s), width) if padding_side == "left" else slice(0, len(s))
        ids[r, sl] = torch.tensor(s)
        mask[r, sl] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    return ids, mask, positions


def shared_prefix_length(seqs: list[list[int]]) -> int:
    """How many leading tokens all sequences share, leaving each at least its last token to score."""
    return min(len(os.path.commonprefix(seqs)), min(len(s) for s in seqs) - 1)
