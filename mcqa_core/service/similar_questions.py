"""Similar questions beside an answer, for Ask and Browse: the data-set rows most like a question, with their answers
and expert explanations (`mcqa_core/data/similar_rows.py`).

One index per data folder (MedMCQA's validation rows, and its train rows where the folder has them) and one per
uploaded bank (by content), built on first use and kept for the process, so every session shares it. Building
takes well under a second for the 4,283 local rows, so nothing is written to disk."""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

from ..data.medmcqa import load_split
from ..data.similar_rows import Evidence, K, SimilarRows, row_text
from ..errors import DataError

MAX_INDEXES = 4  # data folders and banks held at once; the oldest goes first
_indexes: OrderedDict[str, SimilarRows] = OrderedDict()
_lock = threading.Lock()  # two sessions asking at once build one index, not two


def _kept(key: str, build: Callable[[], SimilarRows | None]) -> SimilarRows | None:
    with _lock:
        if key in _indexes:
            _indexes.move_to_end(key)
            return _indexes[key]
        index = build()
        if index is not None:
            _indexes[key] = index
            while len(_indexes) > MAX_INDEXES:
                _indexes.popitem(last=False)
        return index


def _medmcqa_rows(data_dir: str | None) -> SimilarRows | None:
    rows, labels, splits = [], [], []
    # From the hub, validation alone: the rows the app reads anyway (its train split is 182,822 rows to download).
    for split in ("validation", "train") if data_dir else ("validation",):
        try:
            found = load_split(split, data_dir).rows
        except DataError:  # no such file (train is optional), or no data at all
            continue
        rows += found
        labels += [f"MedMCQA {split}"] * len(found)
        splits.append(split)
    return SimilarRows(rows, labels, f"MedMCQA {' and '.join(splits)}") if rows else None


def medmcqa_index(data_dir: str | None) -> SimilarRows | None:
    """The index of a data folder's MedMCQA rows (None: the hub), built on the first call; None where the folder
    holds no rows."""
    key = "medmcqa:" + (str(Path(data_dir).expanduser().resolve()) if data_dir else "hub")
    return _kept(key, lambda: _medmcqa_rows(data_dir))


def bank_index(name: str, rows: list[dict]) -> SimilarRows | None:
    """The index of an uploaded bank's rows, kept by their content (the same file uploaded twice is indexed once)."""
    digest = hashlib.sha256(json.dumps([[r.get("id"), row_text(r)] for r in rows]).encode()).hexdigest()
    return _kept(f"bank:{digest}", lambda: SimilarRows(rows, [name] * len(rows), name) if rows else None)


def similar_questions(
    row: dict, data_dir: str | None = None, bank: dict | None = None, k: int = K
) -> tuple[Evidence | None, str]:
    """(evidence, "") for a question (a typed one, or a row with its id): from `bank` ({"name", "rows"}) when
    given, else from the MedMCQA rows of `data_dir`; (None, why) when there are no rows to search."""
    index = bank_index(bank["name"], bank["rows"]) if bank else medmcqa_index(data_dir)
    if index is None:
        return None, "no data-set rows to search here" + ("" if bank else " (no MedMCQA rows could be read)")
    return index.evidence(row, k), ""


def forget_indexes() -> None:
    """Drop every kept index (tests)."""
    with _lock:
        _indexes.clear()
