"""mcqa-eval's overlap line: how many of the scored questions an adapter's own training rows already hold
(rebuilt from the settings in its mcqa_run.json), and the accuracy on the rest."""

from __future__ import annotations

import sys
from dataclasses import fields

from ..errors import McqaError


def adapter_overlap(run: dict, rows: list[dict], report: dict) -> dict | None:
    """The report's `overlap` block for an adapter's run, or one with `reason` when its training rows cannot be
    read here (a hub split offline, a bank file that moved); None for a run that records no settings."""
    from ..data.overlap import find_overlap
    from ..evaluation.clean_subset import overlap_block
    from ..training.setting_groups import DataArgs
    from ..training.training_rows import training_rows

    saved = ((run or {}).get("settings") or {}).get("data")
    if not isinstance(saved, dict):
        return None
    known = {f.name for f in fields(DataArgs)}
    try:
        train = training_rows(DataArgs(**{k: v for k, v in saved.items() if k in known}))[0]
    except (McqaError, OSError, TypeError, ValueError) as e:
        reason = f"the adapter's training rows cannot be read here ({' '.join(str(e).split())[:160]})"
        print(f"[overlap] not checked: {reason}", file=sys.stderr)
        return {"reason": reason}
    block = overlap_block(report, find_overlap(train.rows, rows), f"{train.split} ({len(train.rows)} rows)")
    clean = block["clean"]
    print(
        f"[overlap] {block['overlapping']} of {len(rows)} questions are in the adapter's training rows "
        f"({len(block['exact'])} exact, {len(block['near'])} by a shared {block['ngram']}-gram); "
        f"accuracy on the other {clean['n']}: {clean['accuracy']:.1%}",
        file=sys.stderr,
    )
    return block
