"""Which columns of a question file hold what: the mapping a user gives, the one guessed from the column names,
and the mappings of the medical benchmarks loaded by name."""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..prompt import MIN_OPTIONS, OPTION_KEYS

ANSWER_FORMS = ("letter", "text", "index0", "index1")
_OPTION_LETTERS = "abcdefghij"  # option columns are guessed up to J; past E a row is skipped, never cut to five


@dataclass
class ColumnMap:
    """Which columns hold what; options from `option_cols` (one each, in order) or from `options_col`."""

    question: str | None = None
    option_cols: list[str] | None = None
    options_col: str | None = None  # a list, a {"A": ..} dict or a list of {"atext": ..} dicts per row
    answer: str | None = None  # None: the bank has no answers
    answer_as: str | None = None  # one of ANSWER_FORMS, or None to detect
    subject: str | None = None
    id: str | None = None  # None: ids are row-1, row-2, ... in file order
    explanation: str | None = None
    context: str | None = None  # a passage shown before the question: text, a list of texts, PubMedQA's dict
    options_fixed: list[str] | None = None  # the same options for every row (PubMedQA's yes / no / maybe)

    def unmapped(self) -> list[str]:
        """What a user still has to choose before the file can be read as questions."""
        missing = [] if self.question else ["the question column"]
        if not self.options_col and not self.options_fixed and len(self.option_cols or []) < MIN_OPTIONS:
            missing.append(f"at least {MIN_OPTIONS} option columns (or the one column that lists them)")
        return missing


@dataclass
class NamedFormat:
    hub: str
    configs: list  # hub configs, loaded and concatenated; [None] for the default one
    split: str
    mapping: ColumnMap


# PubMedQA's labelled set (PQA-L): a question on an abstract, answered yes, no or maybe.
PUBMEDQA = ColumnMap(
    "question",
    options_fixed=["yes", "no", "maybe"],
    answer="final_decision",
    answer_as="text",
    id="pubid",
    explanation="long_answer",
    context="context",
)
_MMLU_MEDICAL = "anatomy clinical_knowledge college_biology college_medicine medical_genetics professional_medicine"
# HEAD-QA's qid restarts in every exam, so its rows are numbered instead.
NAMED_FORMATS = {
    "medmcqa": NamedFormat(
        "openlifescienceai/medmcqa",
        [None],
        "validation",
        ColumnMap(
            "question",
            list(OPTION_KEYS[:4]),
            answer="cop",
            answer_as="index0",
            subject="subject_name",
            id="id",
            explanation="exp",
        ),
    ),
    "medqa": NamedFormat(
        "GBaker/MedQA-USMLE-4-options",
        [None],
        "test",
        ColumnMap("question", options_col="options", answer="answer_idx", answer_as="letter"),
    ),
    "mmlu-medical": NamedFormat(
        "cais/mmlu",
        _MMLU_MEDICAL.split(),
        "test",
        ColumnMap("question", options_col="choices", answer="answer", answer_as="index0", subject="subject"),
    ),
    "pubmedqa": NamedFormat("qiaojin/PubMedQA", ["pqa_labeled"], "train", PUBMEDQA),
    "headqa": NamedFormat(
        "head_qa",
        ["en"],
        "test",
        ColumnMap("qtext", options_col="answers", answer="ra", answer_as="index1", subject="category"),
    ),
}

# guess_mapping's candidates, best first, compared without case.
_GUESS = {
    "question": ("question", "qtext", "stem", "question_text", "prompt"),
    "options_col": ("options", "choices"),
    "answer": (
        "answer_idx",
        "answer",
        "cop",
        "key",
        "answer_key",
        "label",
        "correct",
        "correct_answer",
        "correct_option",
        "gold",
        "ra",
    ),
    "subject": ("subject", "subject_name", "category", "area", "specialty", "topic", "topic_name", "domain"),
    "id": ("id", "qid", "question_id"),
    "explanation": ("exp", "explanation", "rationale"),
    "context": ("context", "contexts", "abstract", "passage", "vignette"),
}
# op{a}, Option A, choice_b, Choice1, option 2, ...: letters a-j, or numbers 1-10
_OPTION_PATTERNS = ("op{}", "{}", "option_{}", "option{}", "option {}", "choice_{}", "choice{}", "choice {}", "opt{}")
_OPTION_NUMBERS = [str(n) for n in range(1, len(_OPTION_LETTERS) + 1)]


def guess_mapping(columns: list[str]) -> ColumnMap:
    """Sensible defaults for a file's columns, for a UI to show and the user to correct."""
    lower = {c.lower(): c for c in reversed(columns)}  # of two names differing only in case, the first wins
    found = {key: next((lower[n] for n in names if n in lower), None) for key, names in _GUESS.items()}
    runs = (
        [lower.get(p.format(mark)) for mark in marks] + [None]
        for marks in (_OPTION_LETTERS, _OPTION_NUMBERS)
        for p in _OPTION_PATTERNS
    )
    option_cols = next((r[: r.index(None)] for r in runs if r.index(None) >= MIN_OPTIONS), None)
    options_col = found.pop("options_col") or lower.get("answers")  # "answers": HEAD-QA's list of {"aid", "atext"}
    if not option_cols and not options_col and "final_decision" in lower:  # PubMedQA's own columns
        kept = {k: lower.get(getattr(PUBMEDQA, k)) for k in ("id", "explanation", "context")}
        return replace(PUBMEDQA, question=found["question"] or PUBMEDQA.question, **kept)
    return ColumnMap(option_cols=option_cols, options_col=None if option_cols else options_col, **found)
