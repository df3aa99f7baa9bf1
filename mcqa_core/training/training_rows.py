"""The rows of one training run: the ones it trains on, the dev rows that choose its checkpoint, and the ones
its final report scores, from MedMCQA's splits or from a bank."""

from __future__ import annotations

from pathlib import Path

from ..data.banks.bank_flags import open_bank
from ..data.banks.bank_rows import select_part
from ..data.medmcqa import DEMO_DEV_PERCENT, LoadedSplit, is_dev, load_split
from ..errors import DataError


def training_rows(d) -> tuple[LoadedSplit, LoadedSplit, LoadedSplit, dict]:
    """(train, dev, report, bank record) for a run's DataArgs. MedMCQA: the three splits of the settings. A
    bank: its held-out quarter is reported (or all of --eval-bank), and a dev slice of the rest chooses the
    checkpoint."""
    if not d.bank:
        dev = load_split(d.eval_split, d.data_dir)
        report = dev if d.report_split == d.eval_split else load_split(d.report_split, d.data_dir)
        return load_split(d.train_split, d.data_dir, d.train_limit), dev, report, {}
    bank = open_bank(d.bank, d)
    other = open_bank(d.eval_bank, d) if d.eval_bank else None
    for b in (bank, other):
        if b is not None and not b.has_answers:
            raise DataError(
                f"{b.source} has no answers (no answer column was found or given), so it cannot be "
                "trained or evaluated on; pass --answer-col NAME"
            )
    rest = bank.rows if other else select_part(bank, "rest").rows
    fit = [r for r in rest if not is_dev(r["id"], DEMO_DEV_PERCENT)]
    dev_rows = [r for r in rest if is_dev(r["id"], DEMO_DEV_PERCENT)]
    if not fit or not dev_rows:
        raise DataError(
            f"{bank.source} is too small to carve a training part and a dev slice ({len(rest)} rows); "
            "give it more questions"
        )
    report = other or select_part(bank, "heldout")

    def split(rows, part, b=bank):
        return LoadedSplit(rows, f"{Path(b.source).name} ({part})", b.source, b.skipped, b.skipped_ids)

    return (
        split(fit[: d.train_limit] if d.train_limit else fit, "train"),
        split(dev_rows, "dev"),
        split(report.rows, "all" if other else "heldout", report),
        {"bank": bank.describe(), "eval_bank": other.describe() if other else None},
    )
