"""Evaluation: report arithmetic by hand, --compare-base with an adapter that changes answers, option
shuffling, generation and the pipeline check, and the CLI's errors. Tiny random Llama only."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time

import pytest

from mcqa_core.data.prompt import LETTERS, PROMPT_VERSION, format_prompt
from mcqa_core.evaluation.eval_rows import EvalRows
from mcqa_core.evaluation.letter_scoring import LetterScore
from mcqa_core.evaluation.measure import measure, permute_options
from mcqa_core.evaluation.protocol import EvalProtocol
from mcqa_core.evaluation.report import build_report, expected_calibration_error
from mcqa_core.evaluation.scorers import LetterScorer
from mcqa_core.evaluation.stats import wilson

from .conftest import REPO, save_random_lora

REPORT_KEYS = {
    "n",
    "accuracy",
    "accuracy_ci",
    "always_a_accuracy",
    "always_a_ci",
    "vs_always_a",
    "per_subject",
    "per_choice_type",
    "confusion",
    "pred_spread",
    "gold_spread",
    "mean_confidence",
    "ece",
    "brier",
    "reliability",
    "risk_coverage",
    "predictions",
}


def _row(i, cop, subject, choice_type, question="q?"):
    return {
        "id": f"r{i}",
        "question": question,
        "opa": f"a{i}",
        "opb": f"b{i}",
        "opc": f"c{i}",
        "opd": f"d{i}",
        "cop": cop,
        "subject_name": subject,
        "choice_type": choice_type,
    }


# ---------------------------------------------------------------------------------------------- report arithmetic


def test_report_arithmetic_on_known_predictions():
    rows = [
        _row(1, 0, "X", "single", question="long " * 100),
        _row(2, 1, "X", "multi"),
        _row(3, 2, "Y", "single"),
        _row(4, 3, "Y", "single"),
        _row(5, 0, "Y", "multi"),
    ]
    probs = [
        [0.7, 0.1, 0.1, 0.1],  # gold A, pred A, conf .70  right
        [0.6, 0.2, 0.1, 0.1],  # gold B, pred A, conf .60  wrong
        [0.1, 0.1, 0.75, 0.05],  # gold C, pred C, conf .75  right
        [0.05, 0.05, 0.05, 0.85],  # gold D, pred D, conf .85  right
        [0.1, 0.3, 0.25, 0.35],
    ]  # gold A, pred D, conf .35  wrong
    scores = [LetterScore(r["id"], p, 0.9, gold=LETTERS[r["cop"]]) for r, p in zip(rows, probs)]
    rep = build_report(rows, scores)
    assert set(rep) == REPORT_KEYS
    assert rep["n"] == 5 and rep["accuracy"] == pytest.approx(3 / 5)
    assert rep["always_a_accuracy"] == pytest.approx(2 / 5)
    plain = lambda groups: {k: {"n": v["n"], "accuracy": v["accuracy"]} for k, v in groups.items()}  # noqa: E731
    assert plain(rep["per_subject"]) == {
        "Y": {"n": 3, "accuracy": pytest.approx(2 / 3)},
        "X": {"n": 2, "accuracy": 0.5},
    }
    assert list(rep["per_subject"]) == ["Y", "X"]  # largest first
    assert plain(rep["per_choice_type"]) == {"single": {"n": 3, "accuracy": 1.0}, "multi": {"n": 2, "accuracy": 0.0}}
    assert rep["per_subject"]["X"]["few"] and rep["per_subject"]["X"]["ci"] == pytest.approx(wilson(1, 2))
    assert rep["confusion"] == {
        "labels": ["A", "B", "C", "D"],
        "matrix": [[1, 0, 0, 1], [1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]],
    }
    assert rep["pred_spread"] == pytest.approx({"A": 0.4, "B": 0.0, "C": 0.2, "D": 0.4})
    assert rep["gold_spread"] == pytest.approx({"A": 0.4, "B": 0.2, "C": 0.2, "D": 0.2})
    assert rep["mean_confidence"] == pytest.approx(0.65)
    # bins: [.3,.4) {.35 wrong}  [.6,.7) {.60 wrong}  [.7,.8) {.70, .75 right}  [.8,.9) {.85 right}
    by_hand = 1 / 5 * 0.35 + 1 / 5 * 0.60 + 2 / 5 * (1 - 0.725) + 1 / 5 * (1 - 0.85)
    assert rep["ece"] == pytest.approx(by_hand) and by_hand == pytest.approx(0.33)
    # Brier: sum over options of (p - one-hot)^2, by row: .12, 1.02, .085, .03, 1.085
    assert rep["brier"] == pytest.approx((0.12 + 1.02 + 0.085 + 0.03 + 1.085) / 5)
    filled = [(b["n"], round(b["confidence"], 6), b["accuracy"]) for b in rep["reliability"] if b["n"]]
    assert filled == [(1, 0.35, 0.0), (1, 0.6, 0.0), (2, 0.725, 1.0), (1, 0.85, 1.0)]
    # most confident first: .85 R, .75 R, .70 R, .60 W, .35 W
    rc = rep["risk_coverage"]
    assert {c: (v["k"], v["accuracy"]) for c, v in rc["at"].items()} == {
        "50%": (3, 1.0), "80%": (4, 0.75), "90%": (5, 0.6)
    }  # fmt: skip
    assert rc["at"]["80%"]["ci"] == pytest.approx(wilson(3, 4))
    assert rc["aurc"] == pytest.approx((0 + 0 + 0 + 0.25 + 0.4) / 5)
    assert rc["curve"][-1] == [1.0, 0.6] and rc["curve"][39] == [0.4, 1.0] and len(rc["curve"]) == 100
    p0 = rep["predictions"][0]
    assert p0["id"] == "r1" and p0["pred"] == "A" and p0["gold"] == "A" and p0["probs"] == probs[0]
    assert p0["subject"] == "X" and p0["question"] == ("long " * 100)[:200]
    json.dumps(rep)  # plain JSON


def test_ece_edges():
    assert expected_calibration_error([1.0, 1.0], [True, True]) == 0.0  # 1.0 lands in the last bin
    assert expected_calibration_error([0.25, 0.25], [True, False]) == pytest.approx(0.25)
    assert expected_calibration_error([0.9] * 10, [True] * 9 + [False]) == pytest.approx(0.0)


def test_report_refuses_rows_without_gold():
    with pytest.raises(ValueError, match="gold"):
        build_report([_row(1, 0, "X", "single")], [LetterScore("r1", [1, 0, 0, 0], 1.0)])


# ---------------------------------------------------------------------------------------------- option shuffling


def test_permute_options_moves_the_answer_with_its_text():
    row = _row(1, 2, "X", "single")
    p = permute_options(row, (2, 0, 3, 1))
    assert (p["opa"], p["opb"], p["opc"], p["opd"]) == ("c1", "a1", "d1", "b1")
    assert p["cop"] == 0 and row["cop"] == 2


class _PolicyScorer:
    """A scorer that picks by a fixed policy: the longest option text, or always "A"."""

    has_base = False

    def __init__(self, policy):
        self.policy = policy

    def score(self, rows, *, adapter=True, progress=None, shots=""):
        out = []
        for r in rows:
            texts = [r[k] for k in ("opa", "opb", "opc", "opd")]
            pick = max(range(4), key=lambda i: len(texts[i])) if self.policy == "content" else 0
            out.append(LetterScore(r["id"], [1.0 if i == pick else 0.0 for i in range(4)], 1.0, gold=LETTERS[r["cop"]]))
        return out

    def describe(self):
        return {"backend": "fake"}


@pytest.mark.parametrize("policy", ["content", "position"])
def test_shuffle_consistency_tells_content_from_position(policy):
    """A scorer that picks the longest option text is consistent under shuffling; one that always says
    "A" is not (and its accuracy tracks where the shuffle put the answer)."""
    rows = [dict(_row(i, i % 4, "X", "single"), **{"opa": "x" * (i + 10)}) for i in range(8)]  # "A" the longest
    rep = measure(_PolicyScorer(policy), EvalRows(rows), EvalProtocol(shuffle_options=3))
    assert rep["shuffle"]["k"] == 3
    if policy == "content":
        assert rep["shuffle"]["consistency"] == 1.0
        assert rep["shuffle"]["accuracy_under_shuffle"] == rep["accuracy"] == 2 / 8
    else:  # a permutation may leave option A in place (5 of 23 do), so not always 0
        assert rep["shuffle"]["consistency"] <= 0.25
    again = measure(_PolicyScorer(policy), EvalRows(rows), EvalProtocol(shuffle_options=3))
    assert again["shuffle"] == rep["shuffle"]  # seeded: the same permutations every run


# ---------------------------------------------------------------------------------------------- a LoRA that matters


@pytest.fixture(scope="module")
def answer_changing_adapter(tmp_path_factory, tiny_model_path):
    """A LoRA on the tiny model with random non-zero B (no training), saved like train_adapter.py saves."""
    return save_random_lora(
        tiny_model_path,
        tmp_path_factory.mktemp("adapters") / "random-lora",
        {
            "base_model": "tiny-random-llama",
            "prompt_version": PROMPT_VERSION,
            "load_in_4bit": True,
            "data": {"train_split": "demo-train"},
        },
        r=8,
        b_std=0.5,
    )


@pytest.fixture(scope="module")
def loaded_adapter(answer_changing_adapter):
    from mcqa_core.models.inference import load_model

    return load_model(answer_changing_adapter)


def test_compare_base_reports_the_rows_the_adapter_changed(loaded_adapter, validation_rows):
    from mcqa_core.evaluation.letter_scoring import score_rows

    rows = validation_rows[:24]
    rep = measure(LetterScorer(loaded_adapter, batch_size=8), EvalRows(rows), EvalProtocol(compare_base=True))
    assert set(rep) == REPORT_KEYS | {"meta", "base", "vs_base", "disagreements"} and set(rep["base"]) == REPORT_KEYS
    changed = [
        (a["id"], a["pred"], b["pred"])
        for a, b in zip(rep["predictions"], rep["base"]["predictions"])
        if a["pred"] != b["pred"]
    ]
    assert changed, "the random LoRA should change some answers"
    assert [(d["id"], d["adapter_pred"], d["base_pred"]) for d in rep["disagreements"]] == changed
    assert all(d["gold"] == LETTERS[r["cop"]] for d in rep["disagreements"] for r in rows if r["id"] == d["id"])
    # The base side really is the base: the same as scoring with the adapter switched off by hand...
    model = loaded_adapter.model
    with model.disable_adapter():
        by_hand = score_rows(model, loaded_adapter.tokenizer, rows, batch_size=8)
    assert [s.pred for s in by_hand] == [p["pred"] for p in rep["base"]["predictions"]]
    # ...and the adapter is on again afterwards.
    again = score_rows(model, loaded_adapter.tokenizer, rows, batch_size=8)
    assert [s.pred for s in again] == [p["pred"] for p in rep["predictions"]]


def test_compare_base_needs_an_adapter(tiny_model, tokenizer, validation_rows):
    class Loaded:
        model, tokenizer = tiny_model, None

    with pytest.raises(ValueError, match="needs a model with an adapter"):
        measure(LetterScorer(Loaded()), EvalRows(validation_rows[:2]), EvalProtocol(compare_base=True))


# ---------------------------------------------------------------------------------------------- generation


def test_generate_text_respects_max_new_tokens_and_stops_at_eos(loaded_adapter, validation_rows, monkeypatch):
    from mcqa_core.models.inference import generate_text
    from mcqa_core.models.loading import load_tokenizer

    model, row = loaded_adapter.model, validation_rows[0]
    produced = []
    real_generate = model.generate

    def spy(*a, **kw):
        out = real_generate(*a, **kw)
        produced.append(out[0, kw["input_ids"].shape[1] :].tolist())
        return out

    monkeypatch.setattr(model, "generate", spy)
    generate_text(model, loaded_adapter.tokenizer, format_prompt(row), max_new_tokens=7)
    greedy = produced[-1]
    assert len(greedy) == 7  # a random model never says eos: the limit is what stops it
    # Make the third new token the end-of-sequence token: generation must stop right after it.
    k = next(i for i in range(2, 7) if greedy[i] not in greedy[:i])
    tok = load_tokenizer(str(loaded_adapter.tokenizer.name_or_path))
    tok.eos_token = tok.convert_ids_to_tokens(greedy[k])
    assert tok.eos_token_id == greedy[k]
    generate_text(model, tok, format_prompt(row), max_new_tokens=40)
    assert produced[-1] == greedy[: k + 1]


def test_adapter_folder_works_with_transformers_pipeline(answer_changing_adapter, loaded_adapter, validation_rows):
    """The course's way to generate (a text-generation pipeline) on our adapter folder, as PEFT opens it."""
    from peft import AutoPeftModelForCausalLM
    from transformers import pipeline

    from mcqa_core.models.inference import generate_text

    model = AutoPeftModelForCausalLM.from_pretrained(str(answer_changing_adapter)).eval()
    tok = loaded_adapter.tokenizer
    pipe = pipeline("text-generation", model=model, tokenizer=tok)
    row = validation_rows[1]
    out = pipe(format_prompt(row), max_new_tokens=6, do_sample=False, return_full_text=False)
    text = out[0]["generated_text"]
    assert isinstance(text, str) and text.strip()
    assert text.strip() == generate_text(model, tok, format_prompt(row), max_new_tokens=6)


# ---------------------------------------------------------------------------------------------- the CLI


def _cli(*args, timeout=900):  # generous: a shared 2-core machine can be 10x slower than usual
    started = time.perf_counter()
    r = subprocess.run(
        [sys.executable, "-m", "mcqa_core.cli.eval_command", *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    r.seconds = time.perf_counter() - started
    return r


def test_cli_compare_base_end_to_end_counts_invalid_rows(answer_changing_adapter, data_dir, tmp_path):
    lines = (data_dir / "validation.jsonl").read_text().splitlines()[:12]
    broken = [
        json.dumps({"id": "no-question", "question": "", "opa": "a", "opb": "b", "opc": "c", "opd": "d", "cop": 0}),
        "{not json",
    ]
    data = tmp_path / "data"
    data.mkdir()
    (data / "validation.jsonl").write_text("\n".join(lines[:5] + broken + lines[5:]) + "\n")
    out = tmp_path / "rep.json"
    r = _cli(
        "--adapter",
        answer_changing_adapter,
        "--data-dir",
        data,
        "--split",
        "validation",
        "--compare-base",
        "--batch-size",
        "4",
        "--output",
        out,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert "2 invalid row(s) skipped" in r.stderr
    assert "trained on demo-train rows, which are part of validation" in r.stderr  # scored on its own rows
    rep = json.loads(out.read_text())
    assert rep["n"] == 12 and rep["meta"]["rows_invalid_skipped"] == 2 and rep["meta"]["split"] == "validation"
    assert "inflated" in rep["meta"]["warning"]
    assert rep["disagreements"] and rep["base"]["n"] == 12
    assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "accuracy" in r.stdout and "base" in r.stdout and "answers changed by adapter" in r.stdout
    assert len(rep["accuracy_ci"]) == 2 and 0 <= rep["vs_base"]["p_value"] <= 1 and "p_value" in rep["vs_always_a"]
    assert "vs the base model" in r.stdout and "95% interval" in r.stdout


def test_cli_bad_input_is_one_clear_line_exit_2(answer_changing_adapter, data_dir, tmp_path):
    ok = ["--data-dir", data_dir, "--output", tmp_path / "r.json"]
    cases = [
        (["--base-model", "tiny-random-llama", "--split", "test", *ok], "unknown split 'test'"),
        (["--base-model", "tiny-random-llama", "--limit", "0", *ok], "--limit: must be at least 1, got 0"),
        (["--base-model", "tiny-random-llama", "--limit", "-3", *ok], "must be at least 1, got -3"),
        (
            ["--base-model", "tiny-random-llama", "--data-dir", data_dir, "--output", tmp_path / "nope" / "r.json"],
            "folder " + str(tmp_path / "nope") + " does not exist",
        ),
        ([*ok], "give --adapter DIR"),
        (["--base-model", "tiny-random-llama", "--compare-base", *ok], "--compare-base needs --adapter"),
        (
            ["--adapter", answer_changing_adapter, "--base-model", "smollm2-135m", "--limit", "2", *ok],
            "was trained on 'tiny-random-llama', not 'smollm2-135m'",
        ),
    ]
    other_prompt = tmp_path / "other-prompt"
    shutil.copytree(answer_changing_adapter, other_prompt)
    run = json.loads((other_prompt / "mcqa_run.json").read_text())
    (other_prompt / "mcqa_run.json").write_text(json.dumps(dict(run, prompt_version="course-v0")))
    cases.append((["--adapter", other_prompt, "--limit", "2", *ok], "trained with prompt version 'course-v0'"))
    for args, message in cases:
        r = _cli(*args)
        assert r.returncode == 2, (args, r.stderr)
        assert message in r.stderr, (args, r.stderr)
        assert len([ln for ln in r.stderr.splitlines() if "error" in ln]) == 1, r.stderr
        assert "[model]" not in r.stderr and "Traceback" not in r.stderr  # refused before any model loaded
    assert not (tmp_path / "r.json").exists()


def test_training_writes_the_eval_report_into_the_adapter_folder(smoke_adapter):
    out, record = smoke_adapter
    rep = json.loads((out / "eval_report.json").read_text())
    assert REPORT_KEYS <= set(rep) and rep["n"] == 32  # the smoke preset's report_limit
    assert (out / "eval_report.png").stat().st_size > 0
    saved = json.loads((out / "mcqa_run.json").read_text())["metrics"]
    assert saved["report_rows"] == 32 and saved["report_accuracy"] == rep["accuracy"]
    assert record["metrics"]["report_accuracy"] == rep["accuracy"]
    # the base on the same rows, with the paired test, without anyone asking (--report-base is on by default)
    assert set(rep["base"]) >= REPORT_KEYS and rep["base"]["n"] == 32
    assert [p["id"] for p in rep["base"]["predictions"]] == [p["id"] for p in rep["predictions"]]
    assert saved["report_base_accuracy"] == rep["base"]["accuracy"] and saved["report_vs_base"] == rep["vs_base"]
    card = (out / "README.md").read_text()
    assert f"The base model alone, on the same questions: {rep['base']['accuracy']:.1%}" in card


def _pred(i, pred, gold, probs=(0.7, 0.1, 0.1, 0.1)):
    return {"id": f"q{i}", "pred": pred, "gold": gold, "probs": list(probs), "subject": "Anatomy"}


def test_changed_answers_split_into_fixed_and_broken_and_the_csv_carries_the_base():
    import csv

    from mcqa_core.evaluation.stats import mcnemar
    from mcqa_core.service.reports import changed_answers, letter_spreads
    from mcqa_core.service.uploads import results_csv

    adapter = [_pred(0, "A", "A"), _pred(1, "B", "A"), _pred(2, "C", "D"), _pred(3, "D", "D")]
    base = [_pred(0, "B", "A"), _pred(1, "A", "A"), _pred(2, "B", "D"), _pred(3, "D", "D", (0.1, 0.1, 0.1, 0.7))]
    spread = {L: 0.25 for L in "ABCD"}
    report = {
        "predictions": adapter,
        "pred_spread": spread,
        "gold_spread": spread,
        "base": {"predictions": base, "pred_spread": {**spread, "A": 0.5}},
        "vs_base": mcnemar([p["pred"] == p["gold"] for p in adapter], [p["pred"] == p["gold"] for p in base]),
    }
    changed = changed_answers(report)
    assert [p["id"] for p in changed["fixed"]] == ["q0"] and changed["fixed"][0]["base_pred"] == "B"
    assert [p["id"] for p in changed["broken"]] == ["q1"] and [p["id"] for p in changed["other"]] == ["q2"]
    # the counts agree with the paired test beside them
    assert (len(changed["fixed"]), len(changed["broken"])) == (report["vs_base"]["a_only"], report["vs_base"]["b_only"])
    assert list(letter_spreads(report)) == ["adapter answers", "base answers", "correct answers"]
    assert changed_answers({"predictions": adapter}) == {"fixed": [], "broken": [], "other": []}

    rows = [{"id": f"q{i}", "question": f"Q{i}?", "opa": "w", "opb": "x", "opc": "y", "opd": "z"} for i in range(4)]
    lines = list(csv.DictReader(results_csv(report, rows).splitlines()))
    assert [ln["subject"] for ln in lines] == ["Anatomy"] * 4
    assert [ln["base_predicted"] for ln in lines] == ["B", "A", "B", "D"]
    assert [ln["base_correct"] for ln in lines] == ["False", "True", "False", "True"]
    assert [ln["changed"] for ln in lines] == ["True", "True", "True", "False"]
    assert lines[3]["base_p_D"] == "0.7" and lines[3]["p_A"] == "0.7"
    assert "base_predicted" not in results_csv({"predictions": adapter}, rows).splitlines()[0]
