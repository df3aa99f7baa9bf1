"""The report's shape, in one place: what `report.build_report` and `measure.measure` write, what `mcqa-eval`
saves as JSON and what the app and the CLI read. TypedDicts, so that the JSON on disk is the object in memory
(the reports saved before stay readable as they are) and a type checker sees every key the readers use.
`report_problems` says what a loaded report lacks."""

from __future__ import annotations

from typing import TypedDict, get_type_hints

Interval = list[float]  # [low, high], Wilson (accuracies) or Newcombe (paired differences), 95 %


class PairedTest(TypedDict):
    """The exact McNemar test of two scorings on the same questions (`stats.mcnemar`)."""

    difference: float
    ci: Interval
    p_value: float
    a_only: int
    b_only: int
    n: int
    test: str
    ci_method: str


class GroupAccuracy(TypedDict):
    n: int
    accuracy: float
    ci: Interval
    few: bool  # too few questions to rank (`stats.FEW`)


class Prediction(TypedDict, total=False):
    id: str
    pred: str
    gold: str
    probs: list[float]
    letter_mass: float
    shortened: bool
    subject: str
    question: str
    logliks: list[float]  # cloze scoring
    rule: str


class AccuracyReport(TypedDict):
    """`build_report`'s part: accuracy with its interval, the always-"A" reference, where and how sure."""

    n: int
    accuracy: float
    accuracy_ci: Interval
    always_a_accuracy: float
    always_a_ci: Interval
    vs_always_a: PairedTest
    per_subject: dict[str, GroupAccuracy]
    per_choice_type: dict[str, GroupAccuracy]
    confusion: dict
    pred_spread: dict[str, float]
    gold_spread: dict[str, float]
    mean_confidence: float
    ece: float
    brier: float
    reliability: list[dict]
    risk_coverage: dict
    predictions: list[Prediction]


class ClozeReport(AccuracyReport, total=False):
    vs_acc: PairedTest  # acc_norm against acc on the same questions
    vs_base: PairedTest


class ReportMeta(TypedDict, total=False):
    """How the numbers were measured: the scorer's description, the rows, the protocol and its card."""

    backend: str
    base_model: str | None
    adapter: str | None
    prompt_style: str
    scoring: str
    precision: str
    batch_size: int
    max_prompt_tokens: int
    rows_shortened: int
    seconds: float
    seconds_per_question: float
    split: str
    source: str
    rows_invalid_skipped: int
    fewshot: dict
    bank: dict
    eval_protocol: dict  # `protocol.EvalProtocol`'s fields
    protocol: dict  # the card (`protocol.protocol_card`), added when written
    device: str
    load_in_4bit: bool | None
    weights: list  # the adapter weights' signature (the leaderboard's reuse rule)
    warning: str
    suite: str
    suite_set: str


class ShuffleResult(TypedDict):
    k: int
    accuracy_under_shuffle: float
    consistency: float
    seed: int


class Disagreement(TypedDict):
    id: str
    adapter_pred: str
    base_pred: str
    gold: str


class Report(AccuracyReport, total=False):
    """A complete report: `build_report`'s keys, `meta`, and the parts the protocol asked for."""

    meta: ReportMeta
    base: AccuracyReport
    vs_base: PairedTest
    disagreements: list[Disagreement]
    shuffle: ShuffleResult
    acc_norm: ClozeReport
    abstain: dict  # `selective.abstention`
    overlap: dict  # train/test overlap and the clean subset (`clean_subset.overlap_block`)
    shots_overlap: dict  # retrieved examples that repeat their question, the accuracy without them


def report_problems(report: object) -> list[str]:
    """What keeps a loaded JSON from being a `Report`: a required key missing or of another kind, in words."""
    if not isinstance(report, dict):
        return [f"a report is a JSON object, not {type(report).__name__}"]
    hints = get_type_hints(AccuracyReport)
    problems = [f"no {key!r}" for key in sorted(AccuracyReport.__required_keys__) if key not in report]
    for key in sorted(AccuracyReport.__required_keys__ & report.keys()):
        kind = getattr(hints[key], "__origin__", hints[key])  # list[...] -> list
        kind = dict if issubclass(kind, dict) else (int, float) if kind is float else kind  # TypedDicts are dicts
        if not isinstance(report[key], kind) or isinstance(report[key], bool) and kind is not bool:
            problems.append(f"{key!r} is {type(report[key]).__name__}, not {hints[key].__name__}")
    return problems
