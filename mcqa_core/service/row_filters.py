"""Validation rows for the Browse page: filters, search, pages, one row by id, a random sample."""

from __future__ import annotations

import random

from ..data.prompt import LETTERS, OPTION_KEYS, option_count


def normalize(text: str) -> str:
    """Whitespace collapsed and case folded: how typed text is compared."""
    return " ".join(text.split()).casefold()


ALL = "All"


def gold_letter(row: dict) -> str | None:
    cop = row.get("cop")
    return LETTERS[cop] if isinstance(cop, int) and 0 <= cop < option_count(row) else None


def subjects(rows: list[dict]) -> list[str]:
    return sorted({r.get("subject_name") or "Unknown" for r in rows})


def topics(rows: list[dict], subject: str = ALL) -> list[str]:
    return sorted(
        {
            r.get("topic_name") or "Unknown"
            for r in rows
            if subject == ALL or (r.get("subject_name") or "Unknown") == subject
        }
    )


def choice_types(rows: list[dict]) -> list[str]:
    return sorted({r.get("choice_type") or "unknown" for r in rows})


def _haystack(row: dict) -> str:
    parts = [row.get("id", ""), row.get("question", "")] + [row.get(k, "") for k in OPTION_KEYS]
    return normalize(" ".join(str(p or "") for p in parts))


def filter_rows(
    rows: list[dict], subject: str = ALL, topic: str = ALL, choice_type: str = ALL, search: str = ""
) -> list[dict]:
    """Rows matching every filter; `search` matches all its words (any case) in the id, question or options."""
    words = normalize(search or "").split()
    out = []
    for r in rows:
        if subject != ALL and (r.get("subject_name") or "Unknown") != subject:
            continue
        if topic != ALL and (r.get("topic_name") or "Unknown") != topic:
            continue
        if choice_type != ALL and (r.get("choice_type") or "unknown") != choice_type:
            continue
        if words:
            hay = _haystack(r)
            if not all(w in hay for w in words):
                continue
        out.append(r)
    return out


def page_count(n_rows: int, page_size: int) -> int:
    return max(1, -(-n_rows // page_size))


def page_rows(rows: list[dict], page: int, page_size: int) -> list[dict]:
    """Rows of 1-based `page`, clamped to the pages that exist."""
    page = min(max(1, page), page_count(len(rows), page_size))
    return rows[(page - 1) * page_size : page * page_size]


def find_row(rows: list[dict], row_id: str) -> dict | None:
    return next((r for r in rows if str(r.get("id")) == str(row_id)), None)


def random_row(rows: list[dict], rng: random.Random | None = None) -> dict:
    return (rng or random).choice(rows)


def short(text: str, n: int = 90) -> str:
    text = " ".join(str(text or "").split())
    return text if len(text) <= n else text[: n - 1] + "…"
