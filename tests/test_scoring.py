"""The batched letter scorer against a plain one-question-at-a-time reference, on the tiny random Llama."""

from __future__ import annotations

import pytest
import torch

from mcqa_core.data.features import encode_prompt
from mcqa_core.data.prompt import LETTERS, OPTION_KEYS, format_prompt, option_count
from mcqa_core.evaluation import letter_scoring as scoring
from mcqa_core.evaluation.cpu_precision import CLOSE_CALL, bf16_pays
from mcqa_core.evaluation.forward_pass import pad_batch
from mcqa_core.evaluation.letter_scoring import accuracy, letter_token_ids, score_rows
from mcqa_core.models import precision_rule


@pytest.fixture(autouse=True)
def fp32_by_default(monkeypatch):
    """The batching machinery is checked against an fp32 reference to 1e-5, so by default these tests score in
    fp32 on every CPU; the bf16 tests at the end ask for bf16 themselves."""
    monkeypatch.setenv(precision_rule.CPU_BF16_ENV, "0")


def reference_probs(model, tokenizer, row, style="course", max_tokens=1024):
    """No batching, no padding, full logits: softmax over the vocabulary at the last prompt token,
    restricted to the four letters and renormalised."""
    ids = torch.tensor([encode_prompt(tokenizer, row, max_tokens, style).ids])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, -1].float()
    p = torch.softmax(logits, -1)[letter_token_ids(tokenizer, style, option_count(row))]
    return (p / p.sum()).tolist(), p.sum().item()


@pytest.fixture()
def mixed_rows(validation_rows):
    """Short and long prompts together (a 10x spread in length), so every batch needs real padding."""
    by_len = sorted(validation_rows[:400], key=lambda r: len(format_prompt(r)))
    return by_len[:4] + by_len[-4:] + by_len[190:193]  # 11 rows: not a multiple of the batch size


@pytest.mark.parametrize("padding_side", ["left", "right"])
@pytest.mark.parametrize("style", ["course", "lm-eval"])
def test_batched_scores_equal_one_at_a_time_reference(tiny_model, tokenizer, mixed_rows, padding_side, style):
    lengths = [len(encode_prompt(tokenizer, r, 1024, style).ids) for r in mixed_rows]
    assert max(lengths) > 3 * min(lengths)
    scores = score_rows(tiny_model, tokenizer, mixed_rows, batch_size=4, style=style, padding_side=padding_side)
    assert [s.id for s in scores] == [r["id"] for r in mixed_rows]  # given order, though scored by length
    for row, s in zip(mixed_rows, scores):
        ref, mass = reference_probs(tiny_model, tokenizer, row, style)
        assert s.probs == pytest.approx(ref, abs=1e-5)
        assert s.letter_mass == pytest.approx(mass, abs=1e-5)
        assert s.pred == LETTERS[max(range(4), key=ref.__getitem__)]
        assert s.gold == LETTERS[row["cop"]] and s.n_tokens == len(encode_prompt(tokenizer, row, 1024, style).ids)
        assert sum(s.probs) == pytest.approx(1.0, abs=1e-6)


def test_batch_size_does_not_change_answers(tiny_model, tokenizer, mixed_rows):
    one = score_rows(tiny_model, tokenizer, mixed_rows, batch_size=1)
    many = score_rows(tiny_model, tokenizer, mixed_rows, batch_size=16)
    assert [s.pred for s in one] == [s.pred for s in many]
    for a, b in zip(one, many):
        assert a.probs == pytest.approx(b.probs, abs=1e-5)
    assert accuracy(one) == accuracy(many)


def test_scorer_leaves_training_mode_and_grads_alone(tiny_model, tokenizer, mixed_rows):
    tiny_model.train()
    calls = []
    score_rows(tiny_model, tokenizer, mixed_rows[:5], batch_size=2, progress=lambda d, t: calls.append((d, t)))
    assert tiny_model.training  # restored for the trainer that called us
    assert calls == [(2, 5), (4, 5), (5, 5)]
    assert all(p.grad is None for p in tiny_model.parameters())


def test_long_question_is_shortened_to_fit(tiny_model, tokenizer, validation_rows):
    row = dict(validation_rows[0], question="why " * 600)
    (s,) = score_rows(tiny_model, tokenizer, [row], max_prompt_tokens=128)
    assert s.shortened and s.n_tokens <= 128
    with pytest.raises(ValueError, match="cannot fit in 20 prompt tokens"):
        score_rows(tiny_model, tokenizer, [row], max_prompt_tokens=20)


def test_pad_batch_positions_count_real_tokens_only():
    ids, mask, pos = pad_batch([[5, 6, 7], [8]], pad_id=0, padding_side="left")
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]] and mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    assert pos.tolist() == [[0, 1, 2], [0, 0, 0]]
    ids, mask, pos = pad_batch([[5, 6, 7], [8]], pad_id=0, padding_side="right")
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0]] and pos.tolist() == [[0, 1, 2], [0, 0, 0]]


def test_letter_tokens_are_the_completion_starts(tokenizer):
    """The scorer reads the token the training completion begins with ("B Aspirin" starts with "B")."""
    ids = letter_token_ids(tokenizer, "course", len(LETTERS))  # A-E: banks have up to five options
    for L, i in zip(LETTERS, ids):
        assert tokenizer(f"{L} some option", add_special_tokens=False)["input_ids"][0] == i
    lm = letter_token_ids(tokenizer, "lm-eval", len(LETTERS))
    assert tokenizer.decode(lm).split() == list(LETTERS) and lm != ids  # " A" after "Answer:"


def test_shared_prompt_start_runs_once_and_changes_nothing(tiny_model, tokenizer, mixed_rows):
    """The course prompt's common first tokens are computed once and reused by every batch."""
    from mcqa_core.evaluation.forward_pass import shared_prefix_length

    seqs = [encode_prompt(tokenizer, r, 1024).ids for r in mixed_rows]
    prefix = shared_prefix_length(seqs)
    assert prefix >= 8 and tokenizer.decode(seqs[0][:prefix]).startswith("Choose the correct option")
    widths = []
    hook = tiny_model.model.embed_tokens.register_forward_hook(lambda m, i, o: widths.append(i[0].shape))
    try:
        reused = score_rows(tiny_model, tokenizer, mixed_rows, batch_size=4)
    finally:
        hook.remove()
    longest = max(map(len, seqs))
    assert widths[0] == (1, prefix)  # once, alone
    assert widths[1:] == [(4, longest - prefix), (4, widths[2][1]), (3, widths[3][1])]
    full = score_rows(tiny_model, tokenizer, mixed_rows, batch_size=4, reuse_prefix=False)
    for a, b in zip(reused, full):
        assert a.probs == pytest.approx(b.probs, abs=1e-5) and a.pred == b.pred


class _LegacyForward(torch.nn.Module):
    """A forward like unsloth's patched Llama: ignores `logits_to_keep` (every position gets logits) and
    returns the cache as legacy tuples, which cannot be repeated per row."""

    def __init__(self, model):
        super().__init__()
        self.inner = model

    def forward(self, logits_to_keep=None, **kwargs):
        out = self.inner(**kwargs)
        if out.past_key_values is not None:
            out.past_key_values = tuple((layer.keys, layer.values) for layer in out.past_key_values.layers)
        return out


@pytest.mark.parametrize("padding_side", ["left", "right"])
def test_a_forward_that_ignores_logits_to_keep_and_returns_tuples_scores_the_same(
    tiny_model, tokenizer, mixed_rows, padding_side
):
    wrapped = _LegacyForward(tiny_model)
    scores = score_rows(wrapped, tokenizer, mixed_rows, batch_size=4, padding_side=padding_side)
    for row, s in zip(mixed_rows, scores):
        ref, _ = reference_probs(tiny_model, tokenizer, row)
        assert s.probs == pytest.approx(ref, abs=1e-5)


@pytest.mark.parametrize("style", ["course", "lm-eval"])
def test_two_three_and_five_option_rows_read_only_their_letters(tiny_model, tokenizer, validation_rows, style):
    """Items of 2, 3, 4 and 5 options in one batch: each row's probabilities are the reference softmax over
    its own letters only, and a report over them has a confusion matrix of A-E."""
    from mcqa_core.evaluation.report import build_report

    rows = []
    for i, n in enumerate([2, 3, 5, 4, 5, 2, 3]):
        base = validation_rows[i]
        options = [base[k] for k in OPTION_KEYS[:4]] + ["None of the above"]
        rows.append(
            {"id": f"n{n}-{i}", "question": base["question"], "cop": i % n, **dict(zip(OPTION_KEYS, options[:n]))}
        )
    scores = score_rows(tiny_model, tokenizer, rows, batch_size=3, style=style)
    for row, s in zip(rows, scores):
        n = option_count(row)
        ref, mass = reference_probs(tiny_model, tokenizer, row, style)
        assert len(s.probs) == n and s.probs == pytest.approx(ref, abs=1e-5)
        assert s.letter_mass == pytest.approx(mass, abs=1e-5)
        assert s.pred in LETTERS[:n] and s.gold == LETTERS[row["cop"]]
    report = build_report(rows, scores)
    assert report["confusion"]["labels"] == list(LETTERS)
    assert sum(map(sum, report["confusion"]["matrix"])) == len(rows)
    assert set(report["pred_spread"]) == set(LETTERS)


def _gap(probs):
    second, first = sorted(probs)[-2:]
    return first - second


@pytest.mark.parametrize("style", ["course", "lm-eval"])  # course: the shared-start cache, in both precisions
def test_bf16_keeps_the_fp32_letters_and_scores_close_calls_again_in_fp32(
    tiny_model, tokenizer, validation_rows, monkeypatch, style
):
    rows = validation_rows[:48]
    # bf16 is kept for every batch here: whether it still pays is timed, and a loaded machine may say no mid-call
    monkeypatch.setattr(scoring._SharedBatchInputs, "bf16_still_pays", lambda self: True)
    fp32 = score_rows(tiny_model, tokenizer, rows, batch_size=8, style=style, bf16=False)
    monkeypatch.setattr(scoring, "CLOSE_CALL", 0.0)
    plain = score_rows(tiny_model, tokenizer, rows, batch_size=8, style=style, bf16=True)  # bf16, no second look
    monkeypatch.setattr(scoring, "CLOSE_CALL", CLOSE_CALL)
    calls = []
    mixed = score_rows(
        tiny_model, tokenizer, rows, batch_size=8, style=style, bf16=True, progress=lambda d, t: calls.append(d)
    )
    assert calls == [8, 16, 24, 32, 40, 48]
    close = [_gap(p.probs) < CLOSE_CALL for p in plain]
    assert 0 < sum(close) < len(rows) / 2, "some close calls, or the fp32 second look goes untested"
    moved = max(abs(a - b) for x, y in zip(plain, fp32) for a, b in zip(x.probs, y.probs))
    assert 1e-4 < moved < CLOSE_CALL / 2  # bf16 really ran, and moved no probability far
    for row_close, p, m, f in zip(close, plain, mixed, fp32):
        assert m.pred == f.pred
        assert m.probs == pytest.approx(f.probs if row_close else p.probs, abs=1e-5)
        assert m.letter_mass == pytest.approx(f.letter_mass if row_close else p.letter_mass, abs=1e-5)


def test_bf16_is_the_default_only_where_it_pays(tiny_model_path, tiny_model, tokenizer, validation_rows, monkeypatch):
    from mcqa_core.evaluation.scorers import LetterScorer
    from mcqa_core.models.inference import LoadedModel, load_model

    rows = validation_rows[:8]
    monkeypatch.delenv(precision_rule.CPU_BF16_ENV)
    monkeypatch.setattr(precision_rule, "cpu_has_native_bf16", lambda: True)
    loaded = load_model(None, tiny_model_path, load_in_4bit=False, device="cpu")
    model = loaded.model
    assert loaded.bf16_scoring and bf16_pays(model)
    by_default = [s.probs for s in LetterScorer(loaded, batch_size=4).score(rows)]
    assert by_default == [s.probs for s in score_rows(model, tokenizer, rows, batch_size=4, bf16=True)]
    fp32 = [s.probs for s in score_rows(model, tokenizer, rows, batch_size=4, bf16=False)]
    assert by_default != fp32
    # built elsewhere (fp32 training, export's merge check): exact comparisons stay exact
    elsewhere = LoadedModel(model, tokenizer, "tiny", None, False, "cpu", 0.0)
    assert [s.probs for s in LetterScorer(elsewhere, batch_size=4).score(rows)] == fp32
    monkeypatch.setenv(precision_rule.CPU_BF16_ENV, "0")  # the opt-out
    assert not bf16_pays(model)
    assert [s.probs for s in LetterScorer(loaded, batch_size=4).score(rows)] == fp32
    monkeypatch.delenv(precision_rule.CPU_BF16_ENV)
    monkeypatch.setattr(precision_rule, "cpu_has_native_bf16", lambda: False)  # emulated bf16 gains nothing
    assert not bf16_pays(model)
    monkeypatch.setattr(precision_rule, "cpu_has_native_bf16", lambda: True)
    assert not bf16_pays(model.to(torch.bfloat16))  # already half precision
    four_bit = load_model(None, tiny_model_path, load_in_4bit=True, device="cpu").model
    assert bf16_pays(four_bit)  # NF4 weights with fp32 compute: dequantized to bf16 per call


def test_4bit_scoring_in_bf16_keeps_the_fp32_letters_on_a_model_that_spreads_them(
    tiny_model_path, tokenizer, validation_rows
):
    from mcqa_core.evaluation.cpu_precision import cpu_4bit_layers
    from mcqa_core.models.inference import load_model

    model = load_model(None, tiny_model_path, load_in_4bit=True, device="cpu").model
    rows = validation_rows[:48]
    fp32 = score_rows(model, tokenizer, rows, batch_size=8, bf16=False)
    mixed = score_rows(model, tokenizer, rows, batch_size=8, bf16=True)
    assert len({s.pred for s in fp32}) >= 3, "a model that answers one letter cannot show a flipped letter"
    assert [s.pred for s in mixed] == [s.pred for s in fp32]
    far = [(m, f) for m, f in zip(mixed, fp32) if _gap(f.probs) >= CLOSE_CALL]
    assert far and max(abs(a - b) for m, f in far for a, b in zip(m.probs, f.probs)) > 1e-4  # bf16 really ran
    assert {m.compute_dtype for m in cpu_4bit_layers(model)} == {torch.float32}  # restored after scoring


def test_the_fp32_second_look_catches_a_near_tie_that_bf16_flips(
    tiny_model_path, tokenizer, validation_rows, monkeypatch
):
    from mcqa_core.evaluation.cpu_precision import cpu_4bit_layers
    from mcqa_core.models.inference import load_model

    model = load_model(None, tiny_model_path, load_in_4bit=True, device="cpu").model
    seen = []

    def constructed(model_, batch, *args):
        # Row 0 is a near-tie that bf16 flips (B over A); row 1 is clear in both precisions.
        in_bf16 = torch.is_autocast_enabled("cpu")
        seen.append((in_bf16, {m.compute_dtype for m in cpu_4bit_layers(model)}, len(batch)))
        tie = [0.44, 0.46, 0.05, 0.05] if in_bf16 else [0.46, 0.44, 0.05, 0.05]
        probs = torch.tensor([tie if it.index == 0 else [0.1, 0.1, 0.7, 0.1] for it in batch])
        return probs, torch.ones(len(batch))

    monkeypatch.setattr(scoring, "_score_batch", constructed)
    out = score_rows(model, tokenizer, validation_rows[:2], batch_size=2, bf16=True)
    assert [s.pred for s in out] == ["A", "C"]
    assert seen == [(True, {torch.bfloat16}, 2), (False, {torch.float32}, 1)]  # only the tie ran again, in fp32


def test_bf16_gives_way_to_fp32_when_a_model_is_mostly_close_calls(
    tiny_model_path, tokenizer, validation_rows, monkeypatch
):
    """A barely trained adapter can leave most rows within CLOSE_CALL: a bf16 pass that every row repeats in fp32
    costs more than fp32 alone, so after the trial rows the call goes on in fp32, with fp32's letters."""
    from mcqa_core.models.inference import load_model

    model = load_model(None, tiny_model_path, load_in_4bit=True, device="cpu").model
    passes = []

    def all_near_ties(model_, batch, *args):
        in_bf16 = torch.is_autocast_enabled("cpu")
        passes.append(("bf16" if in_bf16 else "fp32", len(batch)))
        tie = [0.44, 0.46, 0.05, 0.05] if in_bf16 else [0.46, 0.44, 0.05, 0.05]
        return torch.tensor([tie] * len(batch)), torch.ones(len(batch))

    monkeypatch.setattr(scoring, "_score_batch", all_near_ties)
    rows = (validation_rows * 4)[:64]
    out = score_rows(model, tokenizer, rows, batch_size=8, bf16=True)
    assert {s.pred for s in out} == {"A"}  # fp32's letter, on every row
    trial = scoring.BF16_TRIAL_ROWS // 8
    assert passes == [("bf16", 8), ("fp32", 8)] * trial + [("fp32", 8)] * (8 - trial)


def test_the_fp32_second_look_unwraps_the_autocast_a_bf16_training_run_puts_on_forward(tiny_model):
    """A bf16 Trainer's accelerate wraps `forward` in its own autocast (accelerate's `prepare_model`, built here
    the same way): the close calls of a training run's evaluation must still run in fp32."""
    import copy
    from types import MethodType

    from accelerate.utils import convert_outputs_to_fp32

    from mcqa_core.evaluation.cpu_precision import matmul_precision

    model = copy.deepcopy(tiny_model)
    model._original_forward = model.forward
    model.forward = MethodType(
        convert_outputs_to_fp32(torch.autocast("cpu", dtype=torch.bfloat16)(model.forward.__func__)), model
    )
    dtypes = []
    first = next(m for m in model.modules() if isinstance(m, torch.nn.Linear))
    first.register_forward_hook(lambda m, args, out: dtypes.append(out.dtype))
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.inference_mode():
        wrapped = model.forward
        model(input_ids=ids)
        with matmul_precision(model, False):
            model(input_ids=ids)
        with matmul_precision(model, True):
            model(input_ids=ids)
    assert dtypes == [torch.bfloat16, torch.float32, torch.bfloat16]
    assert model.forward == wrapped  # the Trainer's wrapper is back


def test_a_prefix_memo_reuses_the_shared_start_across_calls_with_the_same_answers(tiny_model, tokenizer, mixed_rows):
    from mcqa_core.evaluation import letter_scoring as scoring

    calls = []
    real = scoring.start_cache
    memo = {}
    try:
        scoring.start_cache = lambda *a: calls.append(1) or real(*a)
        first = score_rows(tiny_model, tokenizer, mixed_rows[:4], prefix_memo=memo)
        again = score_rows(tiny_model, tokenizer, mixed_rows[4:8], prefix_memo=memo)
    finally:
        scoring.start_cache = real
    assert len(calls) == 1 and len(memo) == 1  # the template's start, computed once for both calls
    alone = score_rows(tiny_model, tokenizer, mixed_rows[:8])
    assert [s.pred for s in first + again] == [s.pred for s in alone]
    assert max(abs(p - q) for a, b in zip(first + again, alone) for p, q in zip(a.probs, b.probs)) < 1e-5
