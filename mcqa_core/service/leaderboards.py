"""Leaderboards for the Evaluate page: the ones `mcqa-eval --leaderboard` saved, each entry's report, and any two
entries side by side (both accuracies, the paired test, both letter spreads, the questions where they disagree)."""

from __future__ import annotations

import json
from pathlib import Path

from ..evaluation.leaderboard import BOARD_FILE
from ..evaluation.stats import mcnemar


def saved_leaderboards(folder: str | Path | None = None) -> list[tuple[Path, dict]]:
    """The leaderboards under the reports folder, newest first."""
    from ..evaluation.report import reports_dir

    found = []
    for path in Path(folder or reports_dir()).glob(f"*/{BOARD_FILE}"):
        try:
            board = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(board, dict) and board.get("kind") == "leaderboard":
            found.append((path, board))
    return sorted(found, key=lambda pb: pb[0].stat().st_mtime, reverse=True)


def entry_report(entry: dict) -> dict | None:
    """An entry's report as the leaderboard scored it (a base scored with an adapter switched off is that
    report's `base` part)."""
    try:
        report = json.loads(Path(entry["report"]).read_text())
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if entry.get("kind") == "base" and report.get("base"):
        return report["base"]
    return report


def ranking_rows(board: dict) -> list[dict]:
    return [
        {
            "rank": rank,
            "model": e["name"],
            "kind": e["kind"],
            "accuracy": e["accuracy"],
            "95 % interval": f"{e['accuracy_ci'][0]:.1%} to {e['accuracy_ci'][1]:.1%}",
            "n": e["n"],
            "trained on": e.get("trained_on") or "",
            **{k.split(".", 1)[1]: e["settings"].get(k) for k in board.get("differing_settings", [])},
            "finished": e.get("finished") or "",
        }
        for rank, e in enumerate(board["entries"], 1)
    ]


def pair_rows(board: dict) -> list[dict]:
    return [
        {
            "pair": f"{p['a']} vs {p['b']}",
            "difference (points)": p["test"]["difference"] * 100,
            "p": p["test"]["p_value"],
            "Holm p": p["p_holm"],
            "verdict": "different" if p["significant"] else "not distinguishable",
        }
        for p in board.get("pairs", [])
        if p.get("test")
    ]


def side_by_side(a: dict, b: dict) -> dict:
    """Two reports on the same questions: the paired test, and every question where their answers differ with
    who was right."""
    pa = {str(p["id"]): p for p in a.get("predictions", [])}
    pb = {str(p["id"]): p for p in b.get("predictions", [])}
    ids = [i for i in pa if i in pb]
    test = mcnemar([pa[i]["pred"] == pa[i]["gold"] for i in ids], [pb[i]["pred"] == pb[i]["gold"] for i in ids])
    differ = []
    for i in ids:
        x, y = pa[i], pb[i]
        if x["pred"] == y["pred"]:
            continue
        right = "first" if x["pred"] == x["gold"] else "second" if y["pred"] == y["gold"] else "neither"
        differ.append({"id": i, "subject": x.get("subject") or "unknown", "question": x.get("question", ""),
                       "correct": x["gold"], "first": x["pred"], "second": y["pred"], "right": right})  # fmt: skip
    return {"questions": len(ids), "test": test, "disagree": differ}
