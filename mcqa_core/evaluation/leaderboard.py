"""The leaderboard: several models (adapters and the bases they were trained on) scored on the same rows with the
same protocol, ranked by accuracy with intervals, every pair compared by the exact McNemar test on the same
questions with Holm's correction for the number of pairs, the settings that differ between the runs, and what each
adapter's training method cost (mcqa_run.json's `costs`)."""

from __future__ import annotations

import json
from itertools import combinations
from pathlib import Path

from ..models.tuners import method_of
from ..models.tuners.tuner import WEIGHTS_FILE
from .protocol import protocol_card, protocol_differences
from .stats import CONFIDENCE, holm, mcnemar

BOARD_FILE = "leaderboard.json"
_FACTS = ("n", "accuracy", "accuracy_ci")
METHOD_SETTING = "method.peft_method"
BASE_METHOD = "base"  # the method column of a base model's entry
# What a method cost, as mcqa_run.json's `costs` records it (training/method_costs.py): the columns of the
# leaderboard and of a sweep's ranking.
COST_KEYS = ("trainable_parameters", "total_parameters", "trainable_share", "peak_memory_bytes", "peak_memory_kind",
             "train_tokens", "train_seconds", "tokens_per_second", "saved_bytes")  # fmt: skip


def weights_signature(folder: Path) -> list:
    """The adapter weights as they are now (size, modification time): a retrained adapter's saved reports are not
    reused."""
    stat = (folder / WEIGHTS_FILE).stat() if (folder / WEIGHTS_FILE).exists() else None
    return [stat.st_size, stat.st_mtime_ns] if stat else []


def reusable_report(path: Path, want: dict, ids: list[str], signature: list | None, part=None, split=None):
    """A saved report (or its `part`, e.g. "base") measured on exactly the rows `ids` with the protocol `want`
    (`EvalProtocol.wanted`) and, given a `signature`, on those weights; else None. `split`: the split a training
    report was written on, for reports older than the split in their meta."""
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if signature is not None and report.get("meta", {}).get("weights") not in (None, signature):
        return None
    target = report.get(part) if part else report
    if not isinstance(target, dict) or [str(p.get("id")) for p in target.get("predictions", [])] != ids:
        return None
    card = dict(protocol_card(report), rows=target.get("n"))
    card["split"] = card.get("split") or split
    return target if not protocol_differences(card, want) else None


def run_costs(run: dict) -> dict | None:
    """A run's costs, or None for a record written before they were measured (its cost is unknown)."""
    costs = (run or {}).get("costs")
    return {k: costs.get(k) for k in COST_KEYS} if isinstance(costs, dict) else None


def flat_settings(run: dict) -> dict:
    """A run's settings as one level, `group.key` -> value (the groups of mcqa_run.json's `settings`), with the
    training method always present (LoRA for records written before methods existed)."""
    groups = (run or {}).get("settings") or {}
    flat = {f"{g}.{k}": v for g, values in groups.items() if isinstance(values, dict) for k, v in values.items()}
    return flat | {METHOD_SETTING: method_of(run or {})}


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
    """The leaderboard as JSON: entries (name, kind, base, trained on, method ("base" for a base model) and its
    costs (None for a base, or a run that did not measure them), the differing settings, date, accuracy with its
    interval), best first, and the pairwise tests."""
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
                "method": flat[METHOD_SETTING] if e["kind"] == "adapter" else BASE_METHOD,
                "costs": run_costs(e.get("run") or {}) if e["kind"] == "adapter" else None,
                "settings": {k: flat.get(k) for k in differ} if e["kind"] == "adapter" else {},
                "finished": (e.get("run") or {}).get("finished"),
                "report": e.get("report_file"),
                "reused": e.get("reused", False),
                **{k: e["report"][k] for k in _FACTS},
            }
        )
    return {"kind": "leaderboard", "protocol": protocol, "differing_settings": differ, "entries": rows,
            "pairs": pairwise(entries), "correction": "Holm (family-wise, over every pair)"}  # fmt: skip
