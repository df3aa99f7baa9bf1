"""The rows a protocol measures, with what goes beside them: MedMCQA's split or a part of a bank, the K-shot
examples' text (never inside the rows), and the rows an abstention threshold is chosen on."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..data.banks.bank_rows import select_part
from ..data.medmcqa import load_split
from ..data.prompt import Shots
from ..errors import DataError
from .fewshot import MEDMCQA_SHOTS_FROM, shots_beside, shots_for, similar_shots
from .protocol import EvalProtocol


@dataclass
class EvalRows:
    rows: list[dict]
    split: str = "heldout"
    source: str = ""
    skipped: int = 0  # invalid rows left out, and some of their ids
    skipped_ids: list = field(default_factory=list)
    bank: dict | None = None  # the bank's description (`Bank.describe`), when the rows come from one
    shots: Shots = ""  # the solved examples shown before every question (one text per question when retrieved)
    fewshot: dict = field(default_factory=lambda: {"shots": 0})  # which examples (`fewshot.shots_record`)
    threshold_rows: list[dict] = field(default_factory=list)  # where an abstention threshold is chosen
    threshold_source: str | None = None


def rows_for(protocol: EvalProtocol, *, data_dir=None, bank=None) -> EvalRows:
    """The protocol's rows: a part of `bank` (an opened `Bank`, which must carry answers) or MedMCQA's split from
    `data_dir`, the first `limit`; with their examples (from the bank's rest, else MedMCQA's `MEDMCQA_SHOTS_FROM`)
    and, for an abstention rule, the rows outside them it is chosen on."""
    if bank is None:
        data = load_split(protocol.split, data_dir, protocol.limit)
        out = EvalRows(data.rows, data.split, data.source, data.skipped, data.skipped_ids)
    else:
        if not bank.has_answers:
            raise DataError(
                f"{bank.source} has no answers (no answer column was found or given), so it cannot be "
                "scored; pass --answer-col NAME, or browse it in the app"
            )
        part = select_part(bank, protocol.split)
        rows = part.rows[: protocol.limit] if protocol.limit else part.rows
        out = EvalRows(rows, protocol.split, bank.source, bank.skipped, bank.skipped_ids, bank.describe())
    kw = dict(bank=bank if protocol.shots else None, data_dir=data_dir, scoring=protocol.scoring, split=out.split,
              selection=protocol.shot_selection)  # fmt: skip
    out.shots, out.fewshot = shots_for(out.rows, protocol.shots, protocol.prompt, **kw)
    if protocol.abstain:
        _threshold_rows(out, protocol, data_dir, bank)
    return out


def given_rows(
    rows: list[dict], protocol: EvalProtocol, *, split: str, source: str, pool=None, bank=None, data_dir=None
) -> EvalRows:
    """Rows chosen elsewhere (a suite's set, the app's filters) with their examples: from `pool` (the set's or
    bank's rows, outside the reported ones where it can) or MedMCQA's (`MEDMCQA_SHOTS_FROM[split]`)."""
    if pool is not None and protocol.shots and protocol.shot_selection == "similar":
        kept = rows
        shots, record = similar_shots(rows, pool, protocol.shots, protocol.prompt, protocol.scoring, source)
    elif pool is not None:
        kept, shots, record = shots_beside(rows, pool, protocol.shots, protocol.prompt, source, protocol.scoring)
    else:
        kept = rows
        shots, record = shots_for(rows, protocol.shots, protocol.prompt, data_dir=data_dir, scoring=protocol.scoring,
                                  split=split, selection=protocol.shot_selection)  # fmt: skip
    return EvalRows(kept, split, source, bank=bank.describe() if bank is not None else None, shots=shots,
                    fewshot=record)  # fmt: skip


def _threshold_rows(out: EvalRows, protocol: EvalProtocol, data_dir, bank) -> None:
    """Rows outside the reported ones and their examples: the bank's rest, else MedMCQA's examples split."""
    if bank is not None:
        pool, out.threshold_source = select_part(bank, "rest").rows, f"{bank.source} (rest)"
    else:
        out.threshold_source = MEDMCQA_SHOTS_FROM.get(out.split, "demo-dev")
        pool = load_split(out.threshold_source, data_dir).rows
    taken = {r.get("id") for r in out.rows} | set(out.fewshot.get("shot_ids") or [])
    kept = [r for r in pool if r.get("id") not in taken]
    out.threshold_rows = kept[: protocol.limit] if protocol.limit else kept
