"""Cloze scoring: the log-likelihood of each option's text after the question, lm-evaluation-harness's `acc` (the
sum over the option's tokens) and `acc_norm` (that sum divided by the option's length in characters).

Batched the way the letter scorer is: the tokens every context starts with run once per call, and each question
runs once, its options' tokens packed after its context in the same row, each option attending only to the context
and to itself (a 4D attention mask), at the positions it would have after the context alone. Tokens
follow lm-eval's `_encode_pair` (a context's trailing spaces move to the continuation, whose tokens are those of
context + continuation after the context's), so the scores are lm-eval's on the same prompt.

Cloze runs in fp32 by default: asked for bf16 (`bf16=True`), questions whose two best options are closer than
`CLOSE_NATS` in either rule are scored again in fp32, and at a safe margin that is about half of them, so bf16
saves nothing here (docs/evaluation.md, "Cloze scoring").
"""

from __future__ import annotations

import copy
import math
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field

from ..data.features import encode_prompt
from ..data.prompt import Shots, answer_letter, cloze_continuations, row_options, shots_of
from ..errors import DataError, ModelError
from ..models.tuners.prefix_tuner import virtual_tokens
from .cpu_precision import bf16_pays, matmul_precision, prompt_kernels_for_4bit_cpu
from .forward_pass import MIN_SHARED_PREFIX, pad_batch, shared_prefix_length, start_cache
from .letter_scoring import LetterScore

# Twice the largest change in an option's log-likelihood that bf16 was measured to cause (docs/evaluation.md).
CLOSE_NATS = 2.0
# Questions that run together are of similar length: a batch closes at its row limit or once padding would pass
# this share of its real tokens (a padded token costs what a real one does).
PAD_SLACK = 0.2
_CACHE_OBJECTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> its forward returns a Cache


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


def length_groups(items: list, length: Callable, max_rows: int, slack: float = PAD_SLACK) -> list[list]:
    """`items` (sorted longest first) cut into runs of at most `max_rows`, each closed before its padding would pass
    `slack` times its real tokens."""
    groups, run, longest, real = [], [], 0, 0
    for item in items:
        n = length(item)
        if run and (len(run) == max_rows or max(longest, n) * (len(run) + 1) - (real + n) > slack * (real + n)):
            groups.append(run)
            run, longest, real = [], 0, 0
        run.append(item)
        longest, real = max(longest, n), real + n
    return groups + [run] if run else groups


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


def _encode(tokenizer, row: dict, max_prompt_tokens: int, style: str, index: int, shots: str) -> _Question | None:
    texts = cloze_continuations(row, style)
    longest = max(len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts)
    enc = encode_prompt(tokenizer, row, max_prompt_tokens - longest - 1, style, "cloze", shots)
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
    shots: Shots = "",
) -> list[OptionScore]:
    """Cloze-score rows in the order given (`acc`; `.normed()` gives `acc_norm`). `progress(done, total)` after
    each batch; `bf16=True`: bf16 matmuls where the model allows them (`bf16_pays`), close calls again in fp32;
    `shots`: the K-shot examples' text before every question."""
    import torch

    if virtual_tokens(model):
        raise ModelError(
            "cloze scoring packs each question's options under its own mask, which prefix tuning's "
            "learned positions do not fit; score this adapter by letter (--scoring letter)"
        )
    questions = [_encode(tokenizer, r, max_prompt_tokens, style, i, shots_of(shots, i)) for i, r in enumerate(rows)]
    if any(q is None for q in questions):
        raise DataError(
            f"{questions.count(None)} row(s) cannot fit in {max_prompt_tokens} prompt tokens even shortened; "
            "raise the prompt-token limit or shorten their options"
        )
    questions.sort(key=_packed_length, reverse=True)
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
            starts, legacy = {}, not _returns_cache_objects(model, device)

            def run(batch, half: bool):
                with matmul_precision(model, half):
                    if legacy:
                        return [_whole_sequences(model, q, pad_id, device) for q in batch]
                    if half not in starts:
                        starts[half] = start_cache(model, questions[0].ctx[:start_len], device) if start_len else None
                    return _logliks(model, batch, pad_id, device, starts[half], start_len if starts[half] else 0)

            done = 0
            for batch in length_groups(questions, lambda q: _packed_length(q) - start_len, batch_size):
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
                done += len(batch)
                if progress:
                    progress(done, len(questions))
    finally:
        model.train(was_training)
    return out  # type: ignore[return-value]


def _packed_length(q: _Question) -> int:
    """Tokens a question runs: its context, then each option but its last token."""
    return len(q.ctx) + sum(len(c) - 1 for c in q.conts)


def _returns_cache_objects(model, device) -> bool:
    """Whether the forward returns a Cache (transformers') rather than legacy tuples (unsloth's), whose custom masks
    and positions are not to be relied on: such a model scores each option as a whole sequence instead. Asked once
    per model: the answer queue scores a few questions a call."""
    import torch

    if model not in _CACHE_OBJECTS:
        fwd = model(input_ids=torch.zeros((1, 1), dtype=torch.long, device=device), use_cache=True, logits_to_keep=1)
        _CACHE_OBJECTS[model] = hasattr(fwd.past_key_values, "layers")
    return _CACHE_OBJECTS[model]


def _close_call(ll: list[float], chars: list[int]) -> bool:
    """Whether bf16's error could swap the two best options under either rule."""
    raw = sorted(range(len(ll)), key=ll.__getitem__)[-2:]
    per = [x / max(n, 1) for x, n in zip(ll, chars)]
    norm = sorted(range(len(per)), key=per.__getitem__)[-2:]
    return ll[raw[1]] - ll[raw[0]] < CLOSE_NATS or per[norm[1]] - per[norm[0]] < CLOSE_NATS / min(
        max(chars[i], 1) for i in norm
    )


def _logliks(model, batch: list[_Question], pad_id: int, device, start, start_len: int) -> list[list[float]]:
    """Each question's per-option log-likelihoods from one forward: its context, then every option's tokens packed
    after it, each option at its own positions and attending to the context and to itself only (a 4D mask)."""
    import torch

    packed = []
    for q in batch:
        seq, spans = list(q.ctx[start_len:]), []
        for c in q.conts:
            spans.append((len(seq), len(c) - 1))  # an option's last token is predicted, never read
            seq += c[:-1]
        packed.append((seq, spans))
    width = max(len(seq) for seq, _ in packed)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    positions = torch.zeros((len(batch), width), dtype=torch.long)
    allowed = torch.zeros((len(batch), 1, width, start_len + width), dtype=torch.bool)
    allowed[..., :start_len] = True  # the tokens every context starts with
    causal = torch.ones((width, width), dtype=torch.bool).tril()
    for r, (q, (seq, spans)) in enumerate(zip(batch, packed)):
        n = len(q.ctx) - start_len
        ids[r, : len(seq)] = torch.tensor(seq)
        positions[r, :n] = torch.arange(start_len, len(q.ctx))
        own = allowed[r, 0, :, start_len:]
        own[:n, :n] = causal[:n, :n]
        own[len(seq) :, 0] = True  # padding attends somewhere (its outputs are never read)
        for s, k in spans:
            positions[r, s : s + k] = torch.arange(len(q.ctx), len(q.ctx) + k)
            own[s : s + k, :n] = True
            own[s : s + k, s : s + k] = causal[:k, :k]
    kwargs = {}
    if start is not None:
        cache = copy.deepcopy(start)
        cache.batch_repeat_interleave(len(batch))
        kwargs["past_key_values"] = cache
    hidden = model.get_decoder()(
        input_ids=ids.to(device),
        attention_mask=allowed.to(device),
        position_ids=positions.to(device),
        use_cache=False,
        **kwargs,
    ).last_hidden_state
    # The output layer and its normaliser run on the tokens that predict an option's token only (a 49k vocabulary
    # costs more than the layers): the context's last token for every first token, then the option's own.
    rows, cols, targets, owner = [], [], [], []
    options = [
        (r, q, c, span) for r, (q, (_, spans)) in enumerate(zip(batch, packed)) for c, span in zip(q.conts, spans)
    ]
    for o, (r, q, c, (s, k)) in enumerate(options):
        rows += [r] * (k + 1)
        cols += [len(q.ctx) - start_len - 1, *range(s, s + k)]
        targets += c
        owner += [o] * (k + 1)
    picks = (torch.tensor(rows, device=hidden.device), torch.tensor(cols, device=hidden.device))
    logits = model.get_output_embeddings()(hidden[picks]).float()
    targets_t = torch.tensor(targets, device=logits.device)
    picked = logits.gather(-1, targets_t[:, None])[:, 0] - logits.logsumexp(-1)
    owner_t = torch.tensor(owner, device=logits.device)
    values = torch.zeros(len(options), device=logits.device).index_add(0, owner_t, picked).tolist()
    out, k = [], 0
    for q in batch:
        out.append(values[k : k + len(q.conts)])
        k += len(q.conts)
    return out


def _whole_sequences(model, q: _Question, pad_id: int, device) -> list[float]:
    import torch

    seqs = [q.ctx + c for c in q.conts]
    ids, mask, _ = pad_batch([s[:-1] for s in seqs], pad_id, "right")
    logp = torch.log_softmax(model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float(), -1)
    n = len(q.ctx)
    return [
        sum(logp[i, n - 1 + j, tok].item() for j, tok in enumerate(c)) for i, c in enumerate(q.conts)
    ]  # fmt: skip
