"""Letter scoring: one forward pass per question, the next-token probabilities of A-D after the prompt.

Used by training, the evaluation CLI and the app. Rows are sorted by length so a batch carries little padding,
and only the last position's logits are computed (`logits_to_keep`), for the row's letters. The tokens every
prompt starts with are run once and their key/value cache reused (not under prefix tuning: right padding).

Asked for bf16 (the scorer asks where `bf16_pays`: a CPU with native bf16 matmuls, a model `load_model` loaded),
every row whose two likeliest letters are closer than `CLOSE_CALL` is scored again in fp32, so the letters are
fp32's (`cpu_precision.py`; docs/speed.md).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..data.features import encode_prompt
from ..data.prompt import LETTERS, MEDMCQA_OPTIONS, Shots, answer_letter, letter_prefix, option_count, shots_of
from ..errors import DataError, ModelError
from ..models.tuners.prefix_tuner import virtual_tokens
from .cpu_precision import CLOSE_CALL, matmul_precision, prompt_kernels_for_4bit_cpu
from .forward_pass import MIN_SHARED_PREFIX, pad_batch, shared_prefix_length, start_cache

DEFAULT_MAX_PROMPT_TOKENS = 1024
MEMO_MAX_PREFIX, MEMO_ENTRIES = 64, 8  # what a prefix_memo keeps: template starts, for both precisions
BF16_TRIAL_ROWS = 32  # rows scored in bf16 before a call measures whether bf16 still pays for this model


@dataclass
class LetterScore:
    id: str
    probs: list[float]  # P(A), P(B), ... over the row's 2-5 letters, renormalised over them
    letter_mass: float  # how much of the full next-token distribution fell on those letters
    gold: str | None = None
    shortened: bool = False
    n_tokens: int = 0

    @property
    def pred(self) -> str:
        return LETTERS[max(range(len(self.probs)), key=self.probs.__getitem__)]

    @property
    def confidence(self) -> float:
        return max(self.probs)

    @property
    def correct(self) -> bool | None:
        return None if self.gold is None else self.pred == self.gold

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "pred": self.pred,
            "gold": self.gold,
            "probs": [round(p, 6) for p in self.probs],
            "letter_mass": round(self.letter_mass, 6),
            "shortened": self.shortened,
        }


def letter_token_ids(tokenizer, style: str = "course", letters: int = MEDMCQA_OPTIONS) -> list[int]:
    """The token each answer starts with, tokenized exactly as the training completion starts."""
    ids = [tokenizer(letter_prefix(L, style), add_special_tokens=False)["input_ids"][0] for L in LETTERS[:letters]]
    if len(set(ids)) != letters:
        raise ModelError(
            f"the tokenizer does not give the letters {LETTERS[0]}-{LETTERS[letters - 1]} distinct first "
            f"tokens ({ids}), so letters cannot be scored; use a model whose tokenizer does"
        )
    return ids


@dataclass
class _Item:
    index: int
    ids: list[int]
    shortened: bool = field(default=False)
    options: int = 4


def score_rows(
    model,
    tokenizer,
    rows: list[dict],
    *,
    batch_size: int = 16,
    max_prompt_tokens: int = DEFAULT_MAX_PROMPT_TOKENS,
    style: str = "course",
    padding_side: str = "left",
    progress: Callable[[int, int], None] | None = None,
    reuse_prefix: bool = True,
    bf16: bool = False,
    prefix_memo: dict | None = None,
    shots: Shots = "",
) -> list[LetterScore]:
    """Score rows in the order given; `progress(done, total)` after each batch. `reuse_prefix=False` runs every
    prompt in full (for model wrappers that do not accept a `past_key_values` cache with a padded attention mask).
    `bf16`: run the matmuls in bf16 and close calls again in fp32 (callers ask where `bf16_pays`).
    `shots`: the K-shot examples' text before every question (or one per row). `prefix_memo`: a dict kept by a
    caller whose weights do not change between calls (the app's scorer), so the shared start's cache is computed
    once, not once per call."""
    import torch

    if padding_side not in ("left", "right"):
        raise ValueError("padding_side must be 'left' or 'right'")
    if virtual_tokens(model):  # its learned positions come first: whole prompts, each at the positions it trained at
        padding_side, reuse_prefix = "right", False
    items, skipped = _encode_items(tokenizer, rows, max_prompt_tokens, style, shots)
    letter_ids = torch.tensor(letter_token_ids(tokenizer, style, max((it.options for it in items), default=2)))
    if skipped:
        raise DataError(
            f"{skipped} row(s) cannot fit in {max_prompt_tokens} prompt tokens even shortened; "
            "raise the prompt-token limit or shorten their options"
        )
    prefix_len = shared_prefix_length([it.ids for it in items]) if reuse_prefix and items else 0
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    use_bf16 = bf16
    out: list[LetterScore | None] = [None] * len(rows)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), prompt_kernels_for_4bit_cpu(model), matmul_precision(model, use_bf16):
            prefix = items[0].ids[:prefix_len] if prefix_len >= MIN_SHARED_PREFIX else []
            shared = _SharedBatchInputs(model, letter_ids, pad_id, padding_side, prefix, prefix_memo)
            if prefix and shared.prefix_cache(use_bf16) is None:  # legacy tuples (unsloth's Llama): whole prompts
                shared.prefix = []
            for start in range(0, len(items), batch_size):
                batch = items[start : start + batch_size]
                probs, mass = shared.score(batch, use_bf16)
                for it, p, m in zip(batch, probs.tolist(), mass.tolist()):
                    out[it.index] = _letter_score(rows[it.index], it, p, m)
                if progress:
                    progress(min(start + batch_size, len(items)), len(items))
    finally:
        model.train(was_training)
    return out  # type: ignore[return-value]


def _encode_items(
    tokenizer, rows: list[dict], max_prompt_tokens: int, style: str, shots: Shots
) -> tuple[list[_Item], int]:
    """Each row's prompt tokens, longest first (memory peaks early, padding stays small), and how many rows
    cannot fit even shortened."""
    items, skipped = [], 0
    for i, row in enumerate(rows):
        enc = encode_prompt(tokenizer, row, max_prompt_tokens, style, shots=shots_of(shots, i))
        if enc is None:
            skipped += 1
        else:
            items.append(_Item(i, enc.ids, enc.shortened, option_count(row)))
    items.sort(key=lambda it: len(it.ids), reverse=True)
    return items, skipped


def _letter_score(row: dict, item: _Item, probs: list[float], mass: float) -> LetterScore:
    return LetterScore(
        id=str(row.get("id", item.index)),
        probs=probs[: item.options],
        letter_mass=mass,
        gold=answer_letter(row) if row.get("cop") is not None else None,
        shortened=item.shortened,
        n_tokens=len(item.ids),
    )


@dataclass
class _SharedBatchInputs:
    """What every batch of one `score_rows` call shares: the model, the letters, the padding, and the key/value
    cache of the tokens all prompts start with (one per precision, from `prefix_memo` when a caller keeps one)."""

    model: object
    letter_ids: object
    pad_id: int
    padding_side: str
    prefix: list[int]
    prefix_memo: dict | None
    caches: dict = field(default_factory=dict)
    # [seconds, rows] of this call's bf16 passes and of its fp32 second looks
    spent: dict = field(default_factory=lambda: {True: [0.0, 0], False: [0.0, 0]})

    def bf16_still_pays(self) -> bool:
        """Whether a bf16 pass and its fp32 second looks cost less per row than fp32 alone, on this call's batches
        (not with a model whose letters are mostly close calls: a barely trained adapter)."""
        (t16, n16), (t32, n32) = self.spent[True], self.spent[False]
        if n16 < BF16_TRIAL_ROWS or not n32:
            return True
        return t16 / n16 + (n32 / n16) * (t32 / n32) < t32 / n32

    def prefix_cache(self, bf16: bool):
        if not self.prefix:
            return None
        if bf16 not in self.caches:
            key, memo = (tuple(self.prefix), bf16), self.prefix_memo
            if memo is not None and key in memo:
                self.caches[bf16] = memo[key]
            else:
                self.caches[bf16] = start_cache(self.model, self.prefix, next(self.model.parameters()).device)
                # a template's start is kept across calls, not one question's whole prompt
                if memo is not None and len(self.prefix) <= MEMO_MAX_PREFIX:
                    if len(memo) >= MEMO_ENTRIES:
                        memo.clear()
                    memo[key] = self.caches[bf16]
        return self.caches[bf16]

    def score(self, batch: list[_Item], bf16: bool):
        """(letter probabilities, letter mass); in bf16 close calls again in fp32, fp32 alone once bf16 stops paying."""
        if bf16 and not self.bf16_still_pays():
            with matmul_precision(self.model, False):
                return self._forward(batch, False)
        probs, mass = self._forward(batch, bf16)
        if bf16:
            top2 = probs.topk(2, dim=-1).values
            close = ((top2[:, 0] - top2[:, 1]) < CLOSE_CALL).nonzero().flatten().tolist()
            if close:
                with matmul_precision(self.model, False):
                    probs[close], mass[close] = self._forward([batch[i] for i in close], False)
        return probs, mass

    def _forward(self, batch: list[_Item], bf16: bool):
        device = next(self.model.parameters()).device
        cache, started = self.prefix_cache(bf16), time.perf_counter()
        out = _score_batch(
            self.model, batch, self.letter_ids, self.pad_id, self.padding_side, device, cache, len(self.prefix)
        )
        self.spent[bf16][0] += time.perf_counter() - started
        self.spent[bf16][1] += len(batch)
        return out


def _score_batch(model, batch, letter_ids, pad_id, padding_side, device, prefix_cache=None, prefix_len=0):
    import torch

    ids, mask, positions = pad_batch([it.ids[prefix_len:] for it in batch], pad_id, padding_side)
    last = mask.sum(-1) - 1 if padding_side == "right" else torch.full((len(batch),), ids.shape[1] - 1)
    extra = {}
    if prefix_cache is not None:
        # The shared start's keys/values, one copy per row (the forward appends this batch's to them);
        # padding sits between prefix and suffix under left padding, which the mask hides.
        cache = copy.deepcopy(prefix_cache)
        cache.batch_repeat_interleave(len(batch))
        extra["past_key_values"] = cache
        mask = torch.cat([torch.ones((len(batch), prefix_len), dtype=mask.dtype), mask], dim=1)
        positions = positions + prefix_len
    # Only the positions we read get logits: one column under left padding, the distinct ends otherwise.
    keep = torch.unique(last)
    logits = model(
        input_ids=ids.to(device),
        attention_mask=mask.to(device),
        position_ids=positions.to(device),
        logits_to_keep=keep.to(device),
        use_cache=False,
        **extra,
    ).logits.float()
    if logits.shape[1] != len(keep):  # a forward that ignores logits_to_keep (unsloth's) returns every position
        col = last.to(device)
    else:
        col = torch.searchsorted(keep, last).to(device)
    final = logits[torch.arange(len(batch), device=device), col]  # (B, vocab)
    logp = torch.log_softmax(final, dim=-1)[:, letter_ids.to(device)]
    # Each row reads only its own letters: a 3-option row's D and E get no probability.
    absent = (
        torch.arange(len(letter_ids), device=device)[None, :]
        >= torch.tensor([it.options for it in batch], device=device)[:, None]
    )
    logp = logp.masked_fill(absent, float("-inf"))
    mass = logp.exp().sum(-1)
    return torch.softmax(logp, dim=-1).cpu(), mass.cpu()


def accuracy(scores: list[LetterScore]) -> float:
    graded = [s for s in scores if s.gold is not None]
    return sum(s.correct for s in graded) / len(graded) if graded else float("nan")
