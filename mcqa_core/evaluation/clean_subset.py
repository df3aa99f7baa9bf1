"""A report's accuracy on its clean subset: the questions the training rows did not already hold
(`data/overlap.py`), beside the full figure, each with its interval."""

from __future__ import annotations

from .stats import wilson


def _accuracy_without(report: dict, dropped: set[str]) -> dict:
    kept = [p for p in report.get("predictions", []) if str(p.get("id")) not in dropped]
    right = sum(p.get("pred") == p.get("gold") for p in kept)
    return {"n": len(kept), "accuracy": right / len(kept) if kept else float("nan"), "ci": wilson(right, len(kept))}


def overlap_block(report: dict, found: dict, trained_on: str) -> dict:
    """`found` (find_overlap's) with its counts, the rule, and the clean subset's accuracy (and the base's)."""
    dropped = set(found["exact"]) | set(found["near"])
    block = dict(found, trained_on=trained_on, overlapping=len(dropped))
    block["rule"] = f"the same normalised text, or a shared {found['ngram']}-gram (GPT-3 / lm-eval decontamination)"
    block["clean"] = _accuracy_without(report, dropped)
    if report.get("base"):
        block["base_clean"] = _accuracy_without(report["base"], dropped)
    return block


def shots_overlap_block(report: dict, near: list[str]) -> dict:
    """Retrieved K-shot examples can be near-duplicates of their question: how many questions had one among their
    examples, and the accuracy (and the base's) without those questions."""
    dropped = set(near)
    block = {"overlapping": len(dropped), "ids": sorted(dropped), "clean": _accuracy_without(report, dropped)}
    block["rule"] = "an example with the question's normalised text or a shared 13-gram"
    if report.get("base"):
        block["base_clean"] = _accuracy_without(report["base"], dropped)
    return block
