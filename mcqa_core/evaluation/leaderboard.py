"""The leaderboard: several models (adapters and the bases they were trained on) scored on the same rows with the
same protocol, ranked by accuracy with intervals, every pair compared by the exact McNemar test on the same
questions with Holm's correction for the number of pairs, and the settings that differ between the runs."""

from __future__ import annotations

from itertools import combinations

from .stats import CONFIDENCE, holm, mcnemar

BOARD_FILE = "leaderboard.json"
_FACTS = ("n", "accuracy", "accuracy_ci")


def flat_settings(run: dict) -> dict:
    """A run's settings as one level, `group.key` -> value (the groups of mcqa_run.json's `settings`)."""
    groups = (run or {}).get("settings") or {}
    return {f"{g}.{k}": v for g, values in groups.items() if isinstance(values, dict) for k, v in values.items()}


def settings_that_differ(runs: list[dict]) -> list[str]:
    """The settings whose values are not the same in every run (output folders, data paths and what the final
    report scored aside: none of them changes the adapter)."""
    flats = [flat_settings(r) for r in runs]
    aside = {"train.output_dir", "data.data_dir", "data.report_base", "data.report_limit", "explicit", "preset"}
    keys = sorted({k for f in flats for k in f} - aside)
    return [k for k in keys if len({repr(f.get(k)) for f in flats}) > 1]


def _hits(report: dict) -> dict:
    return {str(p["id"]): p.get("pred") == p.get("gold") for p in report.get("predictions", [])}


def pairwise(entries: list[dict]) -> list[dict]:
    """Every pair of entries on the questions both answered: the exact McNemar test, then Holm over all pairs."""
    pairs = []
    for a, b in combinations(entries, 2):
        ha, hb = _hits(a["report"]), _hits(b["report"])
        ids = [i for i in ha if i in hb]
        test = mcnemar([ha[i] for i in ids], [hb[i] for i in ids]) if ids else None
        pairs.append({"a": a["name"], "b": b["name"], "questions": len(ids), "test": test})
    tested = [p for p in pairs if p["test"]]
    for p, adjusted in zip(tested, holm([p["test"]["p_value"] for p in tested])):
        p["p_holm"] = adjusted
        p["significant"] = adjusted < 1 - CONFIDENCE
    return pairs


def board(entries: list[dict], protocol: dict) -> dict:
    """The leaderboard as JSON: entries (name, kind, base, trained on, the differing settings, date, accuracy with
    its interval), best first, and the pairwise tests."""
    runs = [e.get("run") or {} for e in entries if e["kind"] == "adapter"]
    differ = settings_that_differ(runs) if len(runs) > 1 else []
    rows = []
    for e in sorted(entries, key=lambda e: -e["report"]["accuracy"]):
        flat = flat_settings(e.get("run") or {})
        rows.append(
            {
                "name": e["name"],
                "kind": e["kind"],
                "base_model": e.get("base_model"),
                "trained_on": e.get("trained_on"),
                "settings": {k: flat.get(k) for k in differ} if e["kind"] == "adapter" else {},
                "finished": (e.get("run") or {}).get("finished"),
                "report": e.get("report_file"),
                "reused": e.get("reused", False),
                **{k: e["report"][k] for k in _FACTS},
            }
        )
    return {"kind": "leaderboard", "protocol": protocol, "differing_settings": differ, "entries": rows,
            "pairs": pairwise(entries), "correction": "Holm (family-wise, over every pair)"}  # fmt: skip


def board_table(b: dict) -> str:
    """The board as the CLI prints it: the ranking, then each pair's difference, p and Holm-adjusted p."""
    lines = [f"{'#':>2}  {'model':34}{'n':>6}  {'accuracy (95% interval)':26}{'settings that differ'}"]
    for rank, e in enumerate(b["entries"], 1):
        ci = e["accuracy_ci"]
        settings = ", ".join(f"{k.split('.', 1)[1]}={v}" for k, v in e["settings"].items()) or (
            "(base model)" if e["kind"] == "base" else ""
        )
        name = e["name"] + (" *" if e.get("reused") else "")
        lines.append(
            f"{rank:>2}  {name[:33]:34}{e['n']:>6}  {e['accuracy']:6.1%} [{ci[0]:.1%}, {ci[1]:.1%}]   {settings}"
        )
    lines.append("* reused a saved report on the same rows and protocol")
    lines.append(f"pairs (exact McNemar on the same questions; {b['correction']}):")
    for p in b["pairs"]:
        if not p["test"]:
            lines.append(f"  {p['a']} vs {p['b']}: no question in common")
            continue
        t = p["test"]
        verdict = "different" if p["significant"] else "not distinguishable"
        lines.append(
            f"  {p['a'][:28]:28} vs {p['b'][:28]:28} {t['difference'] * 100:+6.1f} points  p = {t['p_value']:.2g}  "
            f"Holm p = {p['p_holm']:.2g}  {verdict}"
        )
    return "\n".join(lines)
