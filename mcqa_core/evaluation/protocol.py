"""How a number is measured: `EvalProtocol` (what the evaluate, suite and leaderboard commands, the app and the
training report ask `measure.measure` for), and the protocol card it leaves in every report (prompt and its
version, shots, scoring rule, split and rows, model and adapter, precision), shown beside every number, so that
two reports measured differently are never compared without saying how they differ."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..data.prompt import PROMPT_VERSION

# What must match for two accuracies to be compared as the same measurement (the model is what is compared).
COMPARED_ON = ("prompt", "shots", "shot_selection", "scoring", "split", "rows")


@dataclass(frozen=True)
class EvalProtocol:
    """One measurement's settings. The rows: MedMCQA's `split` (or a part of the bank at `source`), the first
    `limit`; `shots` solved examples before each question, drawn at random or the most similar to each
    (`shot_selection`); the `prompt` style; the `scoring` kind (the scorer is
    chosen by it, `scorers.SCORERS`); the base model on the same rows (`compare_base`), each question re-asked
    with `shuffle_options` reorderings, and an abstention rule (`abstain`, e.g. "coverage=0.8")."""

    split: str = "heldout"
    source: str | None = None
    limit: int | None = None
    shots: int = 0
    shot_selection: str = "random"
    prompt: str = "course"
    scoring: str = "letter"
    compare_base: bool = False
    shuffle_options: int = 0
    abstain: str | None = None

    def wanted(self, rows: int) -> dict:
        """The card's fields a saved report must share to stand for this measurement on `rows` rows."""
        return {"prompt": prompt_name(self.prompt, self.scoring), "shots": self.shots, "scoring": self.scoring,
                "split": self.split, "rows": rows,
                "shot_selection": self.shot_selection if self.shots else None}  # fmt: skip


def prompt_name(style: str, scoring: str) -> str:
    """The prompt's name and version: the course template is versioned with the adapters that learned it."""
    name = PROMPT_VERSION if style == "course" else "lm-eval-medmcqa"
    return f"{name}, cloze form" if scoring == "cloze" else name


def protocol_card(report: dict) -> dict:
    """The card for a report (from its `meta` and size); reports written before the card get the defaults they
    were measured with (course prompt, 0-shot, letter scoring)."""
    meta = report.get("meta") or {}
    if isinstance(meta.get("protocol"), dict):
        return meta["protocol"]
    style, scoring = meta.get("prompt_style") or "course", meta.get("scoring") or "letter"
    fewshot = meta.get("fewshot") or {"shots": 0}
    adapter = meta.get("adapter")
    return {
        "prompt": prompt_name(style, scoring),
        "shots": fewshot.get("shots", 0),
        "shot_selection": fewshot.get("selection", "random") if fewshot.get("shots") else None,
        "shots_from": fewshot.get("shots_from"),
        "scoring": scoring,
        "split": meta.get("split"),
        "source": (meta.get("bank") or {}).get("source") or meta.get("source"),
        "bank": Path(str(meta["bank"]["source"])).name if (meta.get("bank") or {}).get("source") else None,
        "rows": report.get("n"),
        "model": meta.get("base_model") or meta.get("model"),
        "adapter": Path(adapter).name if adapter else None,
        "precision": meta.get("precision"),
        "four_bit": meta.get("load_in_4bit"),
    }


def protocol_line(card: dict) -> str:
    """The card in one line, as the CLI prints it and the app shows it under a number."""
    where = ""
    if card.get("rows") and card.get("bank"):
        where = f"{card['rows']} rows of {card['bank']}" + (f" ({card['split']})" if card.get("split") else "") + "; "
    elif card.get("rows"):
        where = f"{card['rows']} {card.get('split') or ''} rows; ".replace("  ", " ")
    how = " most similar" if card.get("shot_selection") == "similar" else ""
    shots = f"{card['shots']}-shot{how}" + (f" from {card['shots_from']}" if card.get("shots_from") else "")
    model = " + ".join(x for x in (card.get("model"), card.get("adapter")) if x) or "model unknown"
    how = weights_and_compute(card.get("four_bit"), card.get("precision"))
    rule = "cloze scoring (acc and acc_norm)" if card["scoring"] == "cloze" else "letter scoring"
    return f"{where}prompt {card['prompt']}, {shots}, {rule}; {model}" + (f" ({how})" if how else "")


def weights_and_compute(four_bit: bool | None, precision: str | None) -> str:
    """How a model's numbers are held and multiplied, in words: "4-bit weights, fp32 compute" (the base's storage
    and the matmuls' precision are two things, and a caption that names one reads as the other)."""
    bits = "4-bit weights" if four_bit else "full-precision weights" if four_bit is False else None
    first, _, rest = (precision or "").partition(", ")  # "bf16, close calls again in fp32"
    compute = f"{first} compute" + (f", {rest}" if rest else "") if first else None
    return ", ".join(x for x in (bits, compute) if x)


def protocol_differences(a: dict, b: dict) -> list[str]:
    """What two cards measure differently (empty: the accuracies are comparable), in words."""
    return [f"{key} {a.get(key)!r} vs {b.get(key)!r}" for key in COMPARED_ON if a.get(key) != b.get(key)]
