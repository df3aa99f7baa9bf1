"""The rows most like a question: a BM25 index (`bm25s`) over each row's passage, question and options.

Evidence for the app, not a model: what it returns is retrieved from the data set, word for word. BM25 found every
near-duplicate that dense embeddings (all-MiniLM-L6-v2) found, and more of the reworded questions, in a thousandth
of the time (`bench/retrieval.py`, figures in docs/app.md). English stop words are dropped, words are not stemmed.

A question that is itself a row (the same id, or the same normalised text as `overlap.words` reads it) is found
by a lookup, not by its score, so it is never mistaken for independent evidence of itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .overlap import words
from .prompt import CONTEXT_KEY, row_options

K = 3


def row_text(row: dict) -> str:
    """What is indexed and what is asked: the passage, the question and its options."""
    return " ".join([row.get(CONTEXT_KEY) or "", str(row.get("question", "")), *map(str, row_options(row))])


def _same_text_key(row: dict) -> str:
    return " ".join(words(row))


@dataclass(frozen=True)
class Hit:
    """One retrieved row: its BM25 score (higher is closer; not a probability, comparable within one question
    only) and how many of the question's words (stop words aside) it holds."""

    row: dict
    score: float
    shared_words: int
    query_words: int
    label: str = ""  # where the row comes from, e.g. "MedMCQA validation"
    same_text: bool = False  # the same text as the question, under another id (MedMCQA repeats some)


@dataclass(frozen=True)
class Evidence:
    """The rows shown beside an answer: `itself` when the question is a row of the index, then the `similar`
    rows (never `itself`), most similar first."""

    itself: Hit | None
    similar: list[Hit] = field(default_factory=list)
    source: str = ""  # what was searched, e.g. "MedMCQA validation and train"
    searched: int = 0  # how many rows


class SimilarRows:
    """A BM25 index of `rows`, built once; `labels` (one per row) say where each row comes from, `name` what the
    rows are."""

    def __init__(self, rows: list[dict], labels: list[str] | None = None, name: str = ""):
        import bm25s

        if not rows:
            raise ValueError("no rows to index")
        self.rows, self.name = rows, name
        self.labels = labels or [""] * len(rows)
        tokens = self._words([row_text(r) for r in rows])
        self._word_sets = [set(t) for t in tokens]
        self._retriever = bm25s.BM25()
        self._retriever.index(tokens, show_progress=False)
        self._by_id = {str(r.get("id")): i for i, r in enumerate(rows) if r.get("id") is not None}
        self._by_text: dict[str, list[int]] = {}
        for i, r in enumerate(rows):
            self._by_text.setdefault(_same_text_key(r), []).append(i)

    def __len__(self) -> int:
        return len(self.rows)

    @staticmethod
    def _words(texts: list[str]) -> list[list[str]]:
        """Lower-case words of two or more letters, English stop words dropped (bm25s's own tokenizer, without a
        vocabulary: a word the index lacks stays itself and scores nothing)."""
        import bm25s

        found = bm25s.tokenize(texts, stopwords="en", return_ids=False, show_progress=False)
        return [[w for w in ws if w] for ws in found]

    def _query_words(self, row: dict) -> list[str]:
        return self._words([row_text(row)])[0]

    def _hit(self, i: int, score: float, query: set[str], same_text: bool = False) -> Hit:
        return Hit(self.rows[i], score, len(query & self._word_sets[i]), len(query), self.labels[i], same_text)

    def search(self, row: dict, k: int = K, exclude: frozenset[int] = frozenset()) -> list[Hit]:
        """The k rows with the highest BM25 score for `row` (a row's text, or a typed question and its options),
        leaving out the positions in `exclude`; rows that share no word with it are never returned."""
        query = self._query_words(row)
        if not query or k <= 0:
            return []
        wanted = min(len(self.rows), k + len(exclude))
        found = self._retriever.retrieve([query], k=wanted, show_progress=False, n_threads=1)
        key, qset = _same_text_key(row), set(query)
        hits = []
        for i, score in zip(found.documents[0].tolist(), found.scores[0].tolist()):
            if i in exclude or score <= 0:
                continue
            hits.append(self._hit(i, float(score), qset, same_text=_same_text_key(self.rows[i]) == key))
        return hits[:k]

    def find_itself(self, row: dict) -> int | None:
        """The position of the row this question is: its id where the index holds it with the same text, else the
        first row with exactly its text; None for a question the data set does not hold."""
        key = _same_text_key(row)
        i = self._by_id.get(str(row.get("id"))) if row.get("id") is not None else None
        if i is not None and _same_text_key(self.rows[i]) == key:
            return i
        same = self._by_text.get(key)
        return same[0] if same else None

    def evidence(self, row: dict, k: int = K) -> Evidence:
        """The question's own row (when the index holds it) and the k most similar other rows."""
        me = self.find_itself(row)
        query = set(self._query_words(row))
        itself = None if me is None else self._hit(me, float("inf"), query, same_text=True)  # found, not scored
        similar = self.search(row, k, exclude=frozenset() if me is None else frozenset({me}))
        return Evidence(itself, similar, self.name, len(self.rows))
