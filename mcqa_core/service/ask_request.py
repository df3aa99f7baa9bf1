"""One Ask, start to end: the prompt the scorer reads, the answer (and a second model's, to compare), and the
similar questions, gathered into an `AskResult` that the page keeps and the view only reads.

The prompt shown to the user is the prompt scored: `scored_prompt` builds it with the scorer's own
`encode_prompt` limit and style (from `describe()`), so the two cannot drift apart, and the explanation is
written from that same text.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..data.prompt import CONTEXT_KEY, OPTION_KEYS
from ..data.similar_rows import Evidence
from .questions import ASK_KEYS, Answer, AskInput, PromptInfo, answer_question, prepare_prompt
from .shared_model import scorer_for
from .similar_questions import similar_questions

# What a drawn sample (MedMCQA or bank row) keeps, to grade the answer while the typed text is unchanged.
SAMPLE_KEYS = ("id", "question", *OPTION_KEYS, "cop", "exp", "subject_name", CONTEXT_KEY)


@dataclass(frozen=True)
class OtherModel:
    """A second model to compare with: its name as shown, and the model (loaded by the caller's cache)."""

    name: str
    loaded: object


@dataclass(frozen=True)
class AskResult:
    """One answered question, as the page keeps it between reruns. Read-only: the view draws it."""

    inputs: dict  # the checked row the model was asked (before any shortening)
    allowed: list[str]  # letters of the filled options
    prompt: PromptInfo  # exactly what the scorer read; shown under "Exact prompt", the explanation starts from it
    answers: dict[str, Answer]  # "adapter", plus "base" (adapter off) or "other" (OtherModel) when compared
    warnings: list[str]
    sample: dict | None = None  # the drawn sample the question still is (grades the answer), else None
    other_name: str | None = None  # the compared model's name, with answers["other"]
    evidence: Evidence | None = None  # similar questions from the data set (or the sample's bank)
    evidence_why: str = ""  # why there is no evidence
    spec: object = None  # the model spec that answered (the page shows the result only while it is current)

    def answers_to(self, row: dict, spec) -> bool:
        """Whether this is the answer to `row` by the model `spec` names (neither changed since)."""
        return self.inputs == row and self.spec == spec


def sample_asked(source: dict | None, row: dict) -> dict | None:
    """The drawn sample (`source`, SAMPLE_KEYS plus its "bank") while the checked row still has its text."""
    if not source:
        return None
    same = (source.get("question") or "").strip() == row["question"] and all(
        (source.get(k) or "").strip() == row.get(k, "") for k in ASK_KEYS if k in row or source.get(k)
    )
    return source if same else None


def scored_prompt(loaded, row: dict) -> PromptInfo:
    """The prompt the shared scorer reads for `row`: `encode_prompt` with the scorer's own limit and style."""
    how = scorer_for(loaded).describe()
    return prepare_prompt(loaded.tokenizer, row, how["max_prompt_tokens"], how["prompt_style"])


def run_ask(
    loaded,
    checked: AskInput,
    *,
    source: dict | None = None,
    partner: str | OtherModel | None = None,
    data_dir: str | None = None,
    bank: dict | None = None,
    spec=None,
) -> AskResult:
    """Ask `loaded` a checked question. `source`: the sample the inputs were drawn from (its answer grades them
    while the text is unchanged); `partner`: "base" (the adapter switched off) or an OtherModel to compare with;
    `bank` ({"name", "rows"}): the uploaded bank, searched for similar questions when the sample came from it.

    Raises DataError when even the options do not fit the prompt, BackendError when a server stops answering.
    """
    prompt = scored_prompt(loaded, checked.row)
    sample = sample_asked(source, checked.row)
    row = dict(checked.row, cop=sample["cop"]) if sample else checked.row
    answers = {"adapter": answer_question(loaded, row, allowed=checked.allowed)}
    if partner == "base":
        answers["base"] = answer_question(loaded, row, adapter=False, allowed=checked.allowed)
    elif isinstance(partner, OtherModel):
        answers["other"] = answer_question(partner.loaded, row, allowed=checked.allowed)
    searched = dict(checked.row, id=sample.get("id")) if sample else checked.row
    evidence, why = similar_questions(searched, data_dir, bank if sample and sample.get("bank") else None)
    return AskResult(
        inputs=checked.row,
        allowed=checked.allowed,
        prompt=prompt,
        answers=answers,
        warnings=checked.warnings,
        sample=sample,
        other_name=partner.name if isinstance(partner, OtherModel) else None,
        evidence=evidence,
        evidence_why=why,
        spec=spec,
    )
