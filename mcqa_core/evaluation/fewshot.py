"""K-shot evaluation: the solved examples shown before each question, drawn once with a fixed seed from the
training side of the data (MedMCQA's dev slice, or a bank's part outside its held-out quarter), never from the
rows being reported; the report records which. The examples' text goes to the scorer beside the rows
(`Scorer.score(rows, shots=...)`), never inside them."""

from __future__ import annotations

import random

from ..data.overlap import find_overlap
from ..data.prompt import Shots, fewshot_prefix
from ..errors import DataError

FEWSHOT_SEED = 1234
# Where MedMCQA's examples come from: the dev slice for the offline held-out rows, the train split when all of
# validation (or the dev slice itself) is reported: never a reported row.
MEDMCQA_SHOTS_FROM = {"heldout": "demo-dev", "validation": "train", "demo-dev": "train"}


def draw_shots(pool: list[dict], reported: list[dict], k: int, seed: int = FEWSHOT_SEED) -> list[dict]:
    """`k` rows of `pool` with an answer and an id outside `reported`, in a fixed order for a given seed."""
    taken = {r.get("id") for r in reported}
    candidates = [r for r in pool if r.get("id") not in taken and r.get("cop") is not None]
    if len(candidates) < k:
        raise DataError(f"--shots {k} needs {k} solved examples outside the reported rows; {len(candidates)} found")
    return random.Random(seed).sample(candidates, k)


def shots_record(shots: list[dict], source: str) -> dict:
    return {"shots": len(shots), "shot_ids": [s.get("id") for s in shots], "shots_from": source, "seed": FEWSHOT_SEED}


def shots_for(
    rows: list[dict],
    k: int,
    style: str,
    *,
    bank=None,
    data_dir=None,
    scoring: str = "letter",
    split: str = "heldout",
    selection: str = "random",
) -> tuple[Shots, dict]:
    """The text of `k` examples to show before each of `rows`' questions, and the record of which ("" for 0).
    Examples come from `bank`'s part outside its held-out quarter, else from MedMCQA in `data_dir`
    (MEDMCQA_SHOTS_FROM[split]): the same `k` drawn at random for every question, or (`selection="similar"`) each
    question's own `k` most similar rows (`similar_shots`)."""
    if not k:
        return "", {"shots": 0}
    from ..data.banks.bank_rows import select_part
    from ..data.medmcqa import load_split

    if bank is not None:
        pool, source = select_part(bank, "rest").rows, f"{bank.source} (rest)"
    else:
        source = MEDMCQA_SHOTS_FROM.get(split, "demo-dev")
        pool = load_split(source, data_dir).rows
    if selection == "similar":
        return similar_shots(rows, pool, k, style, scoring, source)
    try:
        shots = draw_shots(pool, rows, k)
    except DataError as e:
        if bank is None or split == "heldout":
            raise
        # the examples come from the bank's rest, which a report of all (or the rest) of the bank holds
        raise DataError(
            f"{e}: with --split {split}, the examples' pool (the bank's rest) is reported too; pass --split heldout "
            "to report the bank's held-out quarter and draw the examples from the rest"
        ) from None
    return fewshot_prefix(shots, style, scoring), shots_record(shots, source)


def shots_beside(rows: list[dict], pool: list[dict], k: int, style: str, source: str, scoring: str = "letter"):
    """(rows to score, the examples' text, record) with `k` examples from `pool` (a suite set's whole bank)
    outside `rows`; when every row of the bank is reported, the examples are drawn from it and no longer reported
    (the record counts them)."""
    if not k:
        return rows, "", {"shots": 0}
    taken = {r.get("id") for r in rows}
    outside = [r for r in pool if r.get("id") not in taken]
    shots = draw_shots(outside if len(outside) >= k else pool, [], k)
    ids = {s.get("id") for s in shots}
    kept = [r for r in rows if r.get("id") not in ids]
    record = shots_record(shots, source) | (
        {"dropped_from_reported": len(rows) - len(kept)} if len(kept) < len(rows) else {}
    )
    return kept, fewshot_prefix(shots, style, scoring), record


SHOT_SELECTIONS = ("random", "similar")


def similar_shots(rows: list[dict], pool: list[dict], k: int, style: str, scoring: str, source: str):
    """(one examples' text per row, record): each question's `k` most similar solved rows of `pool` by BM25
    (`data/similar_rows.py`), never a reported row, the most similar last (nearest its question, as KATE orders
    them); a question with fewer than `k` rows sharing a word gets the seeded random draw's rows after its own.
    The record names each question's examples and the questions whose examples hold a near-duplicate of them
    (`data/overlap.py`), so that the report can give the accuracy without them."""
    from ..data.similar_rows import SimilarRows

    taken = {r.get("id") for r in rows}
    candidates = [r for r in pool if r.get("id") not in taken and r.get("cop") is not None]
    if len(candidates) < k:
        raise DataError(f"--shots {k} needs {k} solved examples outside the reported rows; {len(candidates)} found")
    index, fallback = SimilarRows(candidates), draw_shots(candidates, [], k)
    texts, ids, near = [], [], []
    for row in rows:
        chosen = [hit.row for hit in index.search(row, k)]
        chosen += [r for r in fallback if r not in chosen][: k - len(chosen)]
        chosen.reverse()
        texts.append(fewshot_prefix(chosen, style, scoring))
        ids.append([r.get("id") for r in chosen])
        found = find_overlap(chosen, [row])
        if found["exact"] or found["near"]:
            near.append(str(row.get("id")))
    record = {"shots": k, "selection": "similar", "shots_from": source, "shot_ids_per_row": ids}
    return texts, record | {"rows_with_near_duplicate_shots": near}
