"""Who scores rows, and how: the interface every scorer meets (`Scorer`), and the two kinds of scoring in this
process, chosen once by name (`SCORERS`, `local_scorer`): `LetterScorer` (the next-token probabilities of the
letters, `letter_scoring.py`) and `ClozeScorer` (each option's text, lm-eval's acc and acc_norm,
`cloze_scoring.py`). A server (`openai_backend.py`) and the app's answer queue are scorers too, so evaluation,
the CLI and the app do not care who answers."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from typing import ClassVar, Protocol

from ..data.prompt import Shots
from .cloze_scoring import score_options
from .cpu_precision import bf16_pays
from .letter_scoring import DEFAULT_MAX_PROMPT_TOKENS, LetterScore, score_rows

Progress = Callable[[int, int], None]


class Scorer(Protocol):
    kind: str  # "letter" or "cloze" (whose scores also carry acc_norm, `OptionScore.normed`)
    has_base: bool  # can answer with the adapter switched off (the base model's answer)

    def score(
        self, rows: list[dict], *, adapter: bool = True, progress: Progress | None = None, shots: Shots = ""
    ) -> list[LetterScore]: ...  # `shots`: the examples' text before every question, or one per question

    def describe(self) -> dict: ...


def adapter_switch(model, adapter: bool):
    """Switch the adapter off for a block (the base model's answer from the same weights); a no-op otherwise."""
    if adapter or not hasattr(model, "disable_adapter"):
        return nullcontext()  # a base model has no adapter to switch off
    return model.disable_adapter()


class _InProcess:
    """What both kinds share: the loaded model (`models.inference.LoadedModel`), its batch and prompt limits."""

    kind: ClassVar[str]

    def __init__(
        self, loaded, *, batch_size: int = 16, max_prompt_tokens: int = DEFAULT_MAX_PROMPT_TOKENS, style="course"
    ):
        self.loaded, self.batch_size, self.max_prompt_tokens, self.style = loaded, batch_size, max_prompt_tokens, style

    @property
    def has_base(self) -> bool:
        return hasattr(self.loaded.model, "disable_adapter")

    def bf16(self) -> bool:
        return bool(getattr(self.loaded, "bf16_scoring", False)) and bf16_pays(self.loaded.model)

    def describe(self) -> dict:
        return {
            "backend": "local",
            "base_model": getattr(self.loaded, "base_model", None),
            "adapter": getattr(self.loaded, "adapter", None),
            "prompt_style": self.style,
            "scoring": self.kind,
            "precision": "bf16, close calls again in fp32" if self.kind == "letter" and self.bf16() else "fp32",
            "batch_size": self.batch_size,
            "max_prompt_tokens": self.max_prompt_tokens,
        }


class LetterScorer(_InProcess):
    """One forward pass per question: the probabilities of its letters after the prompt."""

    kind = "letter"

    def __init__(self, loaded, **kw):
        super().__init__(loaded, **kw)
        self._prefixes = {True: {}, False: {}}  # adapter on/off -> score_rows' prefix_memo (the weights are fixed)

    def score(self, rows, *, adapter=True, progress=None, shots=""):
        with adapter_switch(self.loaded.model, adapter):
            return score_rows(
                self.loaded.model,
                self.loaded.tokenizer,
                rows,
                batch_size=self.batch_size,
                max_prompt_tokens=self.max_prompt_tokens,
                style=self.style,
                progress=progress,
                bf16=self.bf16(),
                prefix_memo=self._prefixes[adapter or not self.has_base],
                shots=shots,
            )


class ClozeScorer(_InProcess):
    """Each option's text after the question: its log-likelihood (acc) and per character (acc_norm). fp32: bf16
    saves nothing here (`cloze_scoring.py`)."""

    kind = "cloze"

    def score(self, rows, *, adapter=True, progress=None, shots=""):
        with adapter_switch(self.loaded.model, adapter):
            kw = dict(batch_size=self.batch_size, max_prompt_tokens=self.max_prompt_tokens, style=self.style)
            return score_options(self.loaded.model, self.loaded.tokenizer, rows, progress=progress, shots=shots, **kw)


SCORERS: dict[str, type[_InProcess]] = {"letter": LetterScorer, "cloze": ClozeScorer}


def local_scorer(loaded, scoring: str = "letter", **kw) -> LetterScorer | ClozeScorer:
    """The in-process scorer of a kind (`SCORERS`), for a loaded model."""
    return SCORERS[scoring](loaded, **kw)


def agreement(a: list[LetterScore], b: list[LetterScore]) -> float:
    """Share of rows on which two scorings pick the same letter."""
    return sum(x.pred == y.pred for x, y in zip(a, b)) / len(a) if a else float("nan")


def max_prob_diff(a: list[LetterScore], b: list[LetterScore]) -> float:
    return max((max(abs(p - q) for p, q in zip(x.probs, y.probs)) for x, y in zip(a, b)), default=0.0)
