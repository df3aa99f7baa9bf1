"""Cloze scoring: the log-likelihood of each option's text after the question, lm-evaluation-harness's `acc` (the
sum over the option's tokens) and `acc_norm` (that sum divided by the option's length in characters).

Batched the way the letter scorer is: the tokens every context starts with run once per call, each question's
context runs once, and its key/value cache is shared by its options, whose tokens alone run after it. Tokens
follow lm-eval's `_encode_pair` (a context's trailing spaces move to the continuation, whose tokens are those of
context + continuation after the context's), so the scores are lm-eval's on the same prompt.

Cloze runs in fp32 by default: asked for bf16 (`bf16=True`), questions whose two best options are closer than
`CLOSE_NATS` in either rule are scored again in fp32, and at a safe margin that is about half of them, so bf16
saves nothing here (docs/speed.md, "Cloze scoring").
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field

from ..data.features import encode_prompt
from ..data.prompt import answer_letter, cloze_continuations, row_options
from ..errors import DataError
from .cpu_precision import bf16_pays, matmul_precision, prompt_kernels_for_4bit_cpu
from .scoring import MIN_SHARED_PREFIX, LetterScore, pad_batch, shared_prefix_length, start_cache

# Twice the largest change in an option's log-likelihood that bf16 was measured to cause (docs/speed.md).
CLOSE_NATS = 2.0
OPTION_GROUP = 16  # options whose tokens run together after their questions' caches


@dataclass
class OptionScore(LetterScore):
    """A LetterScore whose probabilities are a softmax over per-option scores: the summed log-likelihoods (`acc`)
    or, from `normed()`, the same divided by each option's length in characters (`acc_norm`)."""

    logliks: list[float] = field(default_factory=list)
    chars: list[int] = field(default_factory=list)
    rule: str = "acc"

    def normed(self) -> OptionScore:
        per_char = [ll / max(n, 1) for ll, n in zip(self.logliks, self.chars)]
        return OptionScore(
            self.id, _softmax(per_char), 1.0, self.gold, self.shortened, self.n_tokens, self.logliks, self.chars,
            "acc_norm",
        )  # fmt: skip

    def to_dict(self) -> dict:
        return super().to_dict() | {"logliks": [round(x, 4) for x in self.logliks], "rule": self.rule}


def _softmax(xs: list[float]) -> list[float]:
    top = max(xs)
    e = [math.exp(x - top) for x in xs]
    return [v / sum(e) for v in e]


def encode_pair(tokenizer, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """lm-eval's `_encode_pair`: (context tokens, continuation tokens)."""
    spaces = len(context) - len(context.rstrip())
    if spaces:
        context, continuation = context[:-spaces], context[-spaces:] + continuation
    ctx = tokenizer(context, add_special_tokens=True)["input_ids"]
    cont = tokenizer(context + continuation, add_special_tokens=True)["input_ids"][len(ctx) :]
    return ctx, cont or tokenizer(continuation, add_special_tokens=False)["input_ids"]


@dataclass
class _Question:
    index: int
    ctx: list[int]
    conts: list[list[int]]
    chars: list[int]
    shortened: bool


def _encode(tokenizer, row: dict, max_prompt_tokens: int, style: str, index: int) -> _Question | None:
    texts = cloze_continuations(row, style)
    longest = max(len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts)
    enc = encode_prompt(tokenizer, row, max_prompt_tokens - longest - 1, style, "cloze")
    if enc is None:
        return None
    pairs = [encode_pair(tokenizer, enc.text, t) for t in texts]
    # acc_norm divides by the option's own characters (lm-eval's len(choice), not its leading space)
    return _Question(index, pairs[0][0], [c for _, c in pairs], [len(o) for o in row_options(row)], enc.shortened)


def score_options(
    model,
    tokenizer,
    rows: list[dict],
    *,
    batch_size: int = 16,
    max_prompt_tokens: int = 1024,
    style: str = "course",
    progress: Callable[[int, int], None] | None = None,
    bf16: bool = False,
) -> list[OptionScore]:
    """Cloze-score rows in the order given (`acc`; `.normed()` gives `acc_norm`). `progress(done, total)` after
    each batch; `bf16=True`: bf16 matmuls where the model allows them (`bf16_pays`), close calls again in fp32."""
    import torch

    questions = [_encode(tokenizer, r, max_prompt_tokens, style, i) for i, r in enumerate(rows)]
    if any(q is None for q in questions):
        raise DataError(
            f"{questions.count(None)} row(s) cannot fit in {max_prompt_tokens} prompt tokens even shortened; "
            "raise the prompt-token limit or shorten their options"
        )
    questions.sort(key=lambda q: len(q.ctx), reverse=True)
    start_len = shared_prefix_length([q.ctx for q in questions]) if questions else 0
    start_len = start_len if start_len >= MIN_SHARED_PREFIX else 0
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    use_bf16 = bool(bf16) and bf16_pays(model)
    device = next(model.parameters()).device
    out: list[OptionScore | None] = [None] * len(rows)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), prompt_kernels_for_4bit_cpu(model):
            starts = {}

            def run(batch, half: bool):
                with matmul_precision(model, half):
                    if half not in starts:
                        starts[half] = start_cache(model, questions[0].ctx[:start_len], device) if start_len else None
                    return _logliks(model, batch, pad_id, device, starts[half], start_len if starts[half] else 0)

            for first in range(0, len(questions), batch_size):
                batch = questions[first : first + batch_size]
                lls = run(batch, use_bf16)
                if use_bf16:
                    close = [i for i, (q, ll) in enumerate(zip(batch, lls)) if _close_call(ll, q.chars)]
                    for i, ll in zip(close, run([batch[i] for i in close], False) if close else []):
                        lls[i] = ll
                for q, ll in zip(batch, lls):
                    row = rows[q.index]
                    gold = answer_letter(row) if row.get("cop") is not None else None
                    out[q.index] = OptionScore(
                        str(row.get("id", q.index)), _softmax(ll), 1.0, gold, q.shortened, len(q.ctx), ll, q.chars
                    )
                if progress:
                    progress(min(first + batch_size, len(questions)), len(questions))
    finally:
        model.train(was_training)
    return out  # type: ignore[return-value]


def _close_call(ll: list[float], chars: list[int]) -> bool:
    """Whether bf16's error could swap the two best options under either rule."""
    raw = sorted(range(len(ll)), key=ll.__getitem__)[-2:]
    per = [x / max(n, 1) for x, n in zip(ll, chars)]
    norm = sorted(range(len(per)), key=per.__getitem__)[-2:]
    return ll[raw[1]] - ll[raw[0]] < CLOSE_NATS or per[norm[1]] - per[norm[0]] < CLOSE_NATS / min(
        max(chars[i], 1) for i in norm
    )


def _logliks(model, batch: list[_Question], pad_id: int, device, start, start_len: int) -> list[list[float]]:
    """Each question's per-option log-likelihoods: its context once, then every option after that context's cache
    (whole sequences instead, for a forward that returns legacy tuples, which cannot be indexed per option)."""
    import torch

    ids, mask, positions = pad_batch([q.ctx[start_len:] for q in batch], pad_id, "left")
    kwargs = {}
    if start is not None:
        cache = copy.deepcopy(start)
        cache.batch_repeat_interleave(len(batch))
        kwargs["past_key_values"] = cache
        mask = torch.cat([torch.ones((len(batch), start_len), dtype=mask.dtype), mask], dim=1)
        positions = positions + start_len
    fwd = model(
        input_ids=ids.to(device),
        attention_mask=mask.to(device),
        position_ids=positions.to(device),
        use_cache=True,
        logits_to_keep=1,
        **kwargs,
    )
    cache = fwd.past_key_values
    if not hasattr(cache, "layers"):
        return [_whole_sequences(model, q, pad_id, device) for q in batch]
    first = torch.log_softmax(fwd.logits[:, -1].float(), dim=-1)  # predicts each option's first token
    owner = [b for b, q in enumerate(batch) for _ in q.conts]
    conts = [c for q in batch for c in q.conts]
    total = first[torch.tensor(owner, device=device), torch.tensor([c[0] for c in conts], device=device)]
    # The options' other tokens, in groups of similar length (little padding), after their question's cache; the
    # output layer and its normaliser run on real tokens only (a 49k vocabulary costs more than the layers).
    order = sorted((i for i in range(len(conts)) if len(conts[i]) > 1), key=lambda i: len(conts[i]))
    decoder, head = model.get_decoder(), model.get_output_embeddings()
    ctx_len = mask.sum(-1)  # real tokens before each option (the shared start included)
    for g in range(0, len(order), OPTION_GROUP):
        group = order[g : g + OPTION_GROUP]
        rows_of = torch.tensor([owner[i] for i in group])
        t_ids, t_mask, _ = pad_batch([conts[i][:-1] for i in group], pad_id, "right")
        hidden = decoder(
            input_ids=t_ids.to(device),
            attention_mask=torch.cat([mask[rows_of], t_mask], dim=1).to(device),
            position_ids=(ctx_len[rows_of][:, None] + torch.arange(t_ids.shape[1])[None, :]).to(device),
            past_key_values=_selected(cache, rows_of.to(device)),
            use_cache=False,
        ).last_hidden_state
        real = t_mask.bool().to(device)
        logits = head(hidden[real]).float()  # (real tokens, vocabulary)
        targets = torch.tensor([t for i in group for t in conts[i][1:]], device=device)
        picked = logits.gather(-1, targets[:, None])[:, 0] - logits.logsumexp(-1)
        which = torch.tensor([i for i in group for _ in conts[i][1:]], device=device)
        total = total.index_add(0, which, picked)
    values, out, k = total.tolist(), [], 0
    for q in batch:
        out.append(values[k : k + len(q.conts)])
        k += len(q.conts)
    return out


def _selected(cache, rows):
    """The cache of `rows` (repeats allowed), leaving `cache` itself as it is for the next group: its layers are
    copied before they are indexed, so no tensor is copied twice."""
    picked = copy.copy(cache)
    picked.layers = [copy.copy(layer) for layer in cache.layers]
    picked.batch_select_indices(rows)
    return picked


def _whole_sequences(model, q: _Question, pad_id: int, device) -> list[float]:
    import torch

    seqs = [q.ctx + c for c in q.conts]
    ids, mask, _ = pad_batch([s[:-1] for s in seqs], pad_id, "right")
    logp = torch.log_softmax(model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float(), -1)
    n = len(q.ctx)
    return [
        sum(logp[i, n - 1 + j, tok].item() for j, tok in enumerate(c)) for i, c in enumerate(q.conts)
    ]  # fmt: skip
