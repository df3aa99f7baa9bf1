"""Who scores the rows: the model in this process, or (`openai_backend`) a server. Both give `LetterScore`s
for rows, with the adapter on or off, so evaluation, the CLI and the app do not care which."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from typing import Protocol

from .cpu_precision import bf16_pays
from .scoring import DEFAULT_MAX_PROMPT_TOKENS, LetterScore, score_rows

Progress = Callable[[int, int], None]


class Scorer(Protocol):
    has_base: bool  # can answer with the adapter switched off (the base model's answer)

    def score(
        self, rows: list[dict], *, adapter: bool = True, progress: Progress | None = None
    ) -> list[LetterScore]: ...

    def describe(self) -> dict: ...


def adapter_switch(model, adapter: bool):
    """Switch the LoRA off for a block (the base model's answer from the same weights); a no-op otherwise."""
    if adapter or not hasattr(model, "disable_adapter"):
        return nullcontext()  # a base model has no adapter to switch off
    return model.disable_adapter()


class LocalScorer:
    """The loaded model in this process (`models.inference.LoadedModel`), scored by `score_rows`."""

    def __init__(
        self,
        loaded,
        *,
        batch_size: int = 16,
        max_prompt_tokens: int = DEFAULT_MAX_PROMPT_TOKENS,
        style: str = "course",
        scoring: str = "letter",
    ):
        self.loaded, self.batch_size, self.max_prompt_tokens, self.style = loaded, batch_size, max_prompt_tokens, style
        self.scoring = scoring  # letter, or cloze (`cloze.score_options`: each option's text)
        self._prefixes = {True: {}, False: {}}  # adapter on/off -> score_rows' prefix_memo (the weights are fixed)

    @property
    def has_base(self) -> bool:
        return hasattr(self.loaded.model, "disable_adapter")

    def score(self, rows, *, adapter=True, progress=None):
        with adapter_switch(self.loaded.model, adapter):
            if self.scoring == "cloze":
                from .cloze import score_options

                model, tok = self.loaded.model, self.loaded.tokenizer
                kw = dict(batch_size=self.batch_size, max_prompt_tokens=self.max_prompt_tokens, style=self.style)
                return score_options(model, tok, rows, progress=progress, **kw)
            return score_rows(
                self.loaded.model,
                self.loaded.tokenizer,
                rows,
                batch_size=self.batch_size,
                max_prompt_tokens=self.max_prompt_tokens,
                style=self.style,
                progress=progress,
                prefix_memo=self._prefixes[adapter or not self.has_base],
            )

    def describe(self) -> dict:
        return {
            "backend": "local",
            "base_model": getattr(self.loaded, "base_model", None),
            "adapter": getattr(self.loaded, "adapter", None),
            "prompt_style": self.style,
            "scoring": self.scoring,
            "precision": "bf16, close calls again in fp32"
            if self.scoring == "letter" and bf16_pays(self.loaded.model)
            else "fp32",
            "batch_size": self.batch_size,
            "max_prompt_tokens": self.max_prompt_tokens,
        }


def agreement(a: list[LetterScore], b: list[LetterScore]) -> float:
    """Share of rows on which two scorings pick the same letter."""
    return sum(x.pred == y.pred for x, y in zip(a, b)) / len(a) if a else float("nan")


def max_prob_diff(a: list[LetterScore], b: list[LetterScore]) -> float:
    return max((max(abs(p - q) for p, q in zip(x.probs, y.probs)) for x, y in zip(a, b)), default=0.0)
