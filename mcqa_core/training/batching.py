"""Which rows go into which micro-batch: less padding without changing what an optimizer step sees.

A plain loop draws a random permutation and cuts it into micro-batches of `batch_size`; every
`grad_accum` micro-batches make one optimizer step. `StepWindowSampler` draws the same kind of
permutation and takes the same rows for each optimizer step (a window of `batch_size * grad_accum`
rows), but inside the window it sorts the rows by length and cuts them where padding is smallest.

Why that cannot change what the model learns: the Trainer divides the summed token loss of every
micro-batch by the number of label tokens in the whole window (`num_items_in_batch`), so the
gradient of a step is sum(token losses of the window) / (label tokens of the window), whatever the
order of the rows and however the window is split. Only float summation order differs. (Grouping
rows of similar length across steps, as `LengthGroupedSampler` does, would change which rows share
a step; this does not.)

`step_window_sampler` builds it. Micro-batches have a variable number of rows; none costs more padded
tokens than the longest row times `batch_size`, the worst micro-batch a plain loop could draw from the
same window, so peak memory is no higher than the plain loop's.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

# Windows up to this many rows are cut by exact dynamic programming (O(rows^2 x groups));
# larger ones (the course recipe's 1,024-row steps) by bisection on the costliest micro-batch.
EXACT_SPLIT_MAX_ROWS = 128


def split_window(
    lengths: list[int], indices: list[int], groups: int, max_rows_per_group: int | None = None
) -> list[list[int]]:
    """Cut a window of rows into exactly `groups` micro-batches of rows of similar length.

    Rows are sorted longest first and cut into contiguous runs. No run may cost more padded tokens
    than `max_rows_per_group` (default: what a plain loop puts in a micro-batch) times the window's
    longest row, so memory stays within the plain loop's worst micro-batch. Small windows: the cuts
    minimise the total padded tokens exactly. Large windows: they minimise the costliest run.
    """
    if not indices:
        return []
    groups = max(1, min(groups, len(indices)))
    order = sorted(indices, key=lambda i: (-lengths[i], i))
    lens = [lengths[i] for i in order]
    per_group = max_rows_per_group or math.ceil(len(lens) / groups)
    cap = lens[0] * per_group
    runs = _exact_runs(lens, groups, cap) if len(lens) <= EXACT_SPLIT_MAX_ROWS else _minmax_runs(lens, groups, cap)
    return [order[a:b] for a, b in runs]


def _exact_runs(lens: list[int], groups: int, cap: int) -> list[tuple[int, int]]:
    """Runs of sorted `lens` into exactly `groups` pieces, each costing <= cap, least total cost."""
    n, inf = len(lens), float("inf")
    # best[m][i]: least cost of lens[i:] in m runs; cut[m][i]: where the first of them ends.
    best = [[inf] * (n + 1) for _ in range(groups + 1)]
    cut = [[0] * (n + 1) for _ in range(groups + 1)]
    best[0][n] = 0
    for m in range(1, groups + 1):
        for i in range(n - m, -1, -1):
            for j in range(i + 1, n - m + 2):
                cost = lens[i] * (j - i)
                if cost > cap:
                    break
                total = cost + best[m - 1][j]
                if total < best[m][i]:
                    best[m][i], cut[m][i] = total, j
    runs, i = [], 0
    for m in range(groups, 0, -1):
        runs.append((i, cut[m][i]))
        i = cut[m][i]
    return runs


def _minmax_runs(lens: list[int], groups: int, cap: int) -> list[tuple[int, int]]:
    """Runs of sorted `lens` into exactly `groups` pieces whose costliest piece is as cheap as possible."""

    def fill(limit: int) -> list[tuple[int, int]] | None:
        runs, start = [], 0
        while start < len(lens):
            take = limit // lens[start]  # a run's longest row is its first one
            if take < 1 or len(runs) == groups:
                return None
            runs.append((start, min(len(lens), start + take)))
            start = runs[-1][1]
        return runs

    lo, hi = lens[0], cap  # the plain sorted split fits under cap
    while lo < hi:
        mid = (lo + hi) // 2
        if fill(mid) is None:
            lo = mid + 1
        else:
            hi = mid
    runs = fill(lo)
    while len(runs) < groups:  # fewer runs than micro-batches promised: halve the costliest splittable run
        k = max(
            (r for r in range(len(runs)) if runs[r][1] - runs[r][0] > 1),
            key=lambda r: (runs[r][1] - runs[r][0]) * lens[runs[r][0]],
        )
        a, b = runs[k]
        runs[k : k + 1] = [(a, (a + b + 1) // 2), ((a + b + 1) // 2, b)]
    return runs


@dataclass
class BatchPlan:
    """How rows become micro-batches and optimizer steps; `notes` say what was adjusted and why."""

    rows: int
    batch_size: int
    grad_accum: int
    steps_per_epoch: int
    last_step_rows: int
    notes: list[str]

    @property
    def rows_per_step(self) -> int:
        return self.batch_size * self.grad_accum

    def describe(self) -> str:
        text = (
            f"{self.rows} rows, {self.batch_size} rows x {self.grad_accum} accumulation = "
            f"{self.rows_per_step} rows per optimizer step, {self.steps_per_epoch} steps per epoch"
        )
        if self.last_step_rows != self.rows_per_step:
            text += f" (the last one on {self.last_step_rows} rows)"
        return text + "".join(f"; {n}" for n in self.notes)


def plan_batches(rows: int, batch_size: int, grad_accum: int) -> BatchPlan:
    """The batch size and accumulation actually used for `rows` training rows.

    A step asks for more rows than there are: the step takes every row once (batch size and
    accumulation shrink so that no micro-batch is empty and no row is repeated). Rows that do not
    fill the last step: that step is smaller, as in a plain loop (nothing dropped or repeated).
    """
    if rows < 1 or batch_size < 1 or grad_accum < 1:
        raise ValueError(
            f"need at least one row, batch size and accumulation step (got {rows}, {batch_size}, {grad_accum})"
        )
    notes = []
    if batch_size * grad_accum > rows:
        used_bs = min(batch_size, rows)
        used_accum = math.ceil(rows / used_bs)
        notes.append(
            f"asked for {batch_size} x {grad_accum} = {batch_size * grad_accum} rows per step but there are "
            f"only {rows}: using {used_bs} x {used_accum}, one step over all rows per epoch"
        )
        batch_size, grad_accum = used_bs, used_accum
    window = batch_size * grad_accum
    steps = math.ceil(rows / window)
    last = rows - (steps - 1) * window
    if last != window:
        notes.append(
            f"{rows} rows are not a multiple of {window}: the last step of each epoch uses {last} rows "
            "(its loss is still averaged over its own label tokens)"
        )
    return BatchPlan(rows, batch_size, grad_accum, steps, last, notes)


@functools.cache
def _sampler_class():
    # transformers is imported here, not at module import, so plan_batches stays light.
    from transformers.trainer_pt_utils import BatchRebalanceSampler

    class StepWindowSampler(BatchRebalanceSampler):
        """Batch sampler: each optimizer step gets the rows a random permutation gives it, split by length.

        A `BatchRebalanceSampler` (so the Trainer passes it as a `batch_sampler` and calls `set_epoch`)
        with three differences: the seed is the run's seed, the last, partial window is never padded
        with repeated rows, and the cuts minimise the costliest micro-batch exactly.
        """

        def __init__(self, lengths, batch_size: int, grad_accum: int, seed: int = 0):
            self.lengths = [int(x) for x in lengths]
            self.batch_size, self.grad_accum, self.seed, self.epoch = batch_size, grad_accum, seed, 0
            self.window = batch_size * grad_accum
            # What the base class's own methods read:
            self.effective_batch_size, self.dp_size, self.rank, self.shuffle, self.drop_last = (
                self.window,
                1,
                0,
                True,
                False,
            )
            self.num_full_batches, self.remainder = divmod(len(self.lengths), self.window)
            self.tail_groups = math.ceil(self.remainder / batch_size)  # as many micro-batches as a plain loop
            self.has_tail = self.remainder > 0
            self.num_global_batches = self.num_full_batches + int(self.has_tail)

        def set_epoch(self, epoch: int) -> None:
            self.epoch = epoch

        def __len__(self) -> int:
            return self.num_full_batches * self.grad_accum + self.tail_groups

        def windows(self) -> list[list[int]]:
            """This epoch's optimizer-step windows in permutation order (the rows a plain loop's steps get)."""
            import torch

            g = torch.Generator()
            g.manual_seed(self.seed + self.epoch)
            order = torch.randperm(len(self.lengths), generator=g).tolist()
            return [order[i : i + self.window] for i in range(0, len(order), self.window)]

        def __iter__(self):
            for rows in self.windows():
                groups = self.grad_accum if len(rows) == self.window else self.tail_groups
                yield from split_window(self.lengths, rows, groups, self.batch_size)

    return StepWindowSampler


def step_window_sampler(lengths, batch_size: int, grad_accum: int, seed: int = 0):
    """A `StepWindowSampler` (see the module docstring) over rows of the given token lengths."""
    return _sampler_class()(lengths, batch_size, grad_accum, seed)
