"""Cloze scoring (lm-eval's acc and acc_norm) against log-likelihoods computed here one option at a time, with no
batching, no cache and lm-eval's own way of splitting context and continuation into tokens."""

from __future__ import annotations

import json
import math

import pytest
import torch

from mcqa_core.cli.eval_command import main as mcqa_eval
from mcqa_core.data.prompt import LETTERS, cloze_continuations, fewshot_prefix, format_prompt, row_options
from mcqa_core.evaluation import cloze_scoring as cloze
from mcqa_core.evaluation.cloze_scoring import score_options


def independent_logliks(model, tokenizer, row, style):
    """Sum of log P(continuation token | everything before it), one full forward per option."""
    context, out = format_prompt(row, style, "cloze"), []
    for text in cloze_continuations(row, style):
        spaces = len(context) - len(context.rstrip())  # lm-eval moves them onto the continuation
        head, tail = (context[:-spaces], context[-spaces:] + text) if spaces else (context, text)
        ctx = tokenizer(head)["input_ids"]
        cont = tokenizer(head + tail)["input_ids"][len(ctx) :]
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=torch.tensor([ctx + cont])).logits[0].float(), -1)
        out.append(sum(logp[len(ctx) - 1 + j, t].item() for j, t in enumerate(cont)))
    return out


@pytest.mark.parametrize("style", ["course", "lm-eval"])
def test_acc_and_acc_norm_equal_an_independent_computation(tiny_model, tokenizer, validation_rows, style):
    by_len = sorted(validation_rows[:300], key=lambda r: len(format_prompt(r, style, "cloze")))
    rows = by_len[:3] + by_len[-3:] + [dict(by_len[150], opd=None)]  # mixed lengths, a 3-option row
    scores = score_options(tiny_model, tokenizer, rows, batch_size=3, style=style)
    assert [s.id for s in scores] == [r["id"] for r in rows]
    for row, s in zip(rows, scores):
        ref = independent_logliks(tiny_model, tokenizer, row, style)
        assert s.logliks == pytest.approx(ref, abs=2e-3)
        assert s.chars == [len(o) for o in row_options(row)]  # lm-eval's len(choice): no leading space
        expect = [math.exp(x - max(ref)) for x in ref]
        assert s.probs == pytest.approx([e / sum(expect) for e in expect], abs=1e-4)
        assert s.pred == LETTERS[ref.index(max(ref))]
        per_char = [x / n for x, n in zip(ref, s.chars)]
        assert s.normed().pred == LETTERS[per_char.index(max(per_char))] and s.normed().rule == "acc_norm"
    assert len(scores[-1].probs) == 3


def test_whole_sequence_path_equals_the_cached_one(tiny_model, tokenizer, validation_rows):
    """A forward that returns legacy tuples (unsloth's) is scored one question at a time without the cache."""
    rows = validation_rows[:3]
    questions = [cloze._encode(tokenizer, r, 1024, "course", i, "") for i, r in enumerate(rows)]
    with torch.inference_mode():
        cached = cloze._logliks(tiny_model, questions, 0, torch.device("cpu"), None, 0)
        whole = [cloze._whole_sequences(tiny_model, q, 0, torch.device("cpu")) for q in questions]
    for a, b in zip(cached, whole):
        assert a == pytest.approx(b, abs=2e-3)


def test_cloze_shots_show_the_correct_option_text():
    ex = {"id": "x", "question": "Which?", "opa": "alpha", "opb": "beta", "opc": "gamma", "opd": "delta", "cop": 2}
    assert fewshot_prefix([ex], "lm-eval", "cloze") == "Question: Which?\nAnswer: gamma\n\n"
    assert fewshot_prefix([ex], "course", "cloze").endswith("### Answer:\ngamma\n\n")
    assert "### Choice" not in format_prompt(ex, "course", "cloze")


def test_mcqa_eval_cloze_reports_both_rules_with_intervals_and_the_protocol(tmp_path, smoke_adapter, data_dir):
    adapter, _ = smoke_adapter
    out = tmp_path / "cloze.json"
    argv = ["--adapter", str(adapter), "--data-dir", str(data_dir), "--limit", "8", "--compare-base"]
    assert mcqa_eval([*argv, "--scoring", "cloze", "--shots", "1", "--output", str(out)]) == 0
    report = json.loads(out.read_text())
    norm = report["acc_norm"]
    assert norm["n"] == 8 and len(norm["accuracy_ci"]) == 2 and "p_value" in norm["vs_acc"]
    assert report["base"]["acc_norm"]["n"] == 8 and "p_value" in norm["vs_base"]
    assert all("logliks" in p and len(p["logliks"]) == 4 for p in report["predictions"])
    card = report["meta"]["protocol"]
    assert card["scoring"] == "cloze" and card["shots"] == 1 and card["rows"] == 8 and card["split"] == "heldout"
    assert card["prompt"].endswith("cloze form") and card["precision"] == "fp32"


def test_cloze_through_a_server_is_refused_before_loading(capsys):
    argv = ["--backend", "openai", "--endpoint", "http://127.0.0.1:9/v1", "--model", "m", "--scoring", "cloze"]
    assert mcqa_eval(argv) == 2
    assert "--scoring cloze needs --backend local" in capsys.readouterr().err


def test_evaluate_page_scores_k_shot_cloze_and_switches_between_the_two_rules(
    monkeypatch, tmp_path, data_dir, tiny_model_path
):
    """The app's Evaluate: shots and cloze chosen on the page, acc and acc_norm each with the base beside them,
    and the line that says how the numbers were measured."""
    from app_ui.markdown_text import md_escape

    from .app_helpers import make_tiny_adapter
    from .test_app import open_app, shown

    adapters = tmp_path / "adapters"
    make_tiny_adapter(adapters / "tiny-lora", tiny_model_path)
    for key, value in (("MCQA_APP_BASE_MODEL", "tiny-random-llama"), ("MCQA_APP_4BIT", "0")):
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("MCQA_ADAPTERS_DIR", str(adapters))
    monkeypatch.setenv("MCQA_DATA_DIR", str(data_dir))
    at = open_app("evaluate")
    at.number_input(key="evaluate_n").set_value(8)
    at.number_input(key="evaluate_shots").set_value(2)
    at.segmented_control(key="evaluate_scoring").set_value("cloze")
    at.button(key="evaluate_run").click().run()
    assert not at.exception
    report = at.session_state["evaluate_result"]["report"]
    assert report["meta"]["fewshot"]["shots"] == 2 and "acc_norm" in report and report["base"]["acc_norm"]
    text = shown(at)
    assert md_escape("Measured on 8 heldout rows; prompt course-v1, cloze form, 2-shot from demo-dev") in text
    metrics = {m.label: m.value for m in at.metric}
    assert (
        metrics["Adapter"] == f"{report['accuracy']:.1%}"
        and metrics["Base model"] == f"{report['base']['accuracy']:.1%}"
    )
    at.segmented_control(key="report_rule").set_value("acc_norm").run()
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    norm = report["acc_norm"]["accuracy"]
    assert (
        metrics["Adapter"] == f"{norm:.1%}" and metrics["Base model"] == f"{report['base']['acc_norm']['accuracy']:.1%}"
    )
