"""Has it seen the test? Test questions whose text (question and options, normalised) a run's training rows
already hold: exactly, or by a shared 13-gram, the decontamination rule of GPT-3 and lm-evaluation-harness.

Normalised text is lower case, every run of characters that is not a letter or digit one space. A question with
fewer than N words is compared whole (it has no N-gram)."""

from __future__ import annotations

import re

from .prompt import CONTEXT_KEY, row_options

NGRAM = 13
_NOT_WORD = re.compile(r"[^\w]+|_")


def words(row: dict) -> list[str]:
    """The normalised words of a row's passage, question and options."""
    text = " ".join([row.get(CONTEXT_KEY) or "", str(row.get("question", "")), *map(str, row_options(row))])
    return _NOT_WORD.sub(" ", text.casefold()).split()


def _grams(ws: list[str], n: int) -> set[int]:
    if len(ws) < n:
        return {hash(" ".join(ws))}
    return {hash(" ".join(ws[i : i + n])) for i in range(len(ws) - n + 1)}


def find_overlap(train_rows: list[dict], test_rows: list[dict], n: int = NGRAM) -> dict:
    """`exact`: ids of test rows whose normalised text equals a training row's; `near`: the others that share an
    N-gram with one (a short row: its whole text). Ids in test-row order."""
    whole = {" ".join(words(r)) for r in train_rows}
    grams: set[int] = set()
    for r in train_rows:
        grams |= _grams(words(r), n)
    exact, near = [], []
    for r in test_rows:
        ws = words(r)
        if " ".join(ws) in whole:
            exact.append(str(r.get("id")))
        elif _grams(ws, n) & grams:
            near.append(str(r.get("id")))
    return {"ngram": n, "train_rows": len(train_rows), "test_rows": len(test_rows), "exact": exact, "near": near}
