"""K-shot evaluation: solved examples before each question, drawn with a fixed seed outside the reported rows;
zero examples leave the course prompt byte-identical."""

from __future__ import annotations

import json

import pytest

from mcqa_core.cli.eval_command import main as mcqa_eval
from mcqa_core.data.prompt import FEWSHOT_SEPARATOR, PROMPT_TEMPLATE, fewshot_prefix, format_completion, format_prompt
from mcqa_core.errors import DataError
from mcqa_core.evaluation.fewshot import draw_shots, shots_for


def _row(i: int, cop: int | None = 1) -> dict:
    return {"id": f"r{i}", "question": f"Question {i}?", "opa": "w", "opb": "x", "opc": "y", "opd": "z", "cop": cop}


def test_zero_shots_keep_the_course_prompt_and_k_shots_put_solved_examples_first():
    rows, pool = [_row(i) for i in range(3)], [_row(i) for i in range(10)]
    assert shots_for(rows, 0, "course") == ("", {"shots": 0})
    assert format_prompt(rows[0]) == PROMPT_TEMPLATE.format(**rows[0])  # byte-identical at K = 0
    shots = draw_shots(pool, rows, 2)
    assert len(shots) == 2 and not {s["id"] for s in shots} & {r["id"] for r in rows}  # never a reported row
    assert draw_shots(pool, rows, 2) == shots  # the same examples every time
    prompt = format_prompt(rows[0], shots=fewshot_prefix(shots, "course"))
    first = format_prompt(shots[0]) + format_completion(shots[0]) + FEWSHOT_SEPARATOR
    assert prompt.startswith(first) and prompt.endswith(format_prompt(rows[0]))  # the question, as at K = 0
    assert "x" in format_completion(shots[0]) and prompt.count("### Answer:\n") == 3
    assert format_prompt(rows[0], "lm-eval", shots=fewshot_prefix(shots, "lm-eval")).count("Answer: B\n\n") == 2
    with pytest.raises(DataError, match="--shots 9 needs 9 solved examples"):
        draw_shots(pool[:5] + [_row(20, cop=None)], rows, 9)


def test_mcqa_eval_scores_k_shot_and_records_the_examples(tmp_path, data_dir):
    out = tmp_path / "r.json"
    argv = ["--base-model", "tiny-random-llama", "--no-4bit", "--data-dir", str(data_dir), "--limit", "6"]
    assert mcqa_eval([*argv, "--shots", "3", "--output", str(out)]) == 0
    report = json.loads(out.read_text())
    fewshot = report["meta"]["fewshot"]
    assert fewshot["shots"] == 3 and fewshot["shots_from"] == "demo-dev" and len(set(fewshot["shot_ids"])) == 3
    assert not set(fewshot["shot_ids"]) & {p["id"] for p in report["predictions"]}
    assert report["n"] == 6
    zero = tmp_path / "z.json"
    assert mcqa_eval([*argv, "--output", str(zero)]) == 0
    assert json.loads(zero.read_text())["meta"]["fewshot"] == {"shots": 0}


def test_similar_shots_come_from_the_pool_never_a_reported_row_and_the_card_says_so(validation_rows):
    from mcqa_core.evaluation.fewshot import similar_shots
    from mcqa_core.evaluation.protocol import protocol_card, protocol_line

    reported, pool = validation_rows[:4], validation_rows[2:40]  # the pool holds two reported rows
    texts, record = similar_shots(reported, pool, 3, "course", "letter", "demo-dev")
    assert len(texts) == 4 and record["selection"] == "similar" and record["shots_from"] == "demo-dev"
    reported_ids, pool_ids = {r["id"] for r in reported}, {r["id"] for r in pool}
    for row, ids, text in zip(reported, record["shot_ids_per_row"], texts):
        assert len(ids) == 3 and set(ids) <= pool_ids - reported_ids  # from the pool, never a reported row
        assert text.count("### Answer:\n") == 3 and row["question"] not in text
    assert similar_shots(reported, pool, 3, "course", "letter", "demo-dev") == (texts, record)  # the same again
    # a question that repeats a pool row gets it as an example, and the record names it
    twin = dict(pool[10], id="twin")
    _, with_twin = similar_shots([twin], pool, 3, "course", "letter", "demo-dev")
    assert with_twin["shot_ids_per_row"][0][-1] == pool[10]["id"]  # the most similar, nearest the question
    assert with_twin["rows_with_near_duplicate_shots"] == ["twin"]
    card = protocol_card({"n": 4, "meta": {"fewshot": record, "split": "heldout"}})
    assert card["shot_selection"] == "similar" and "3-shot most similar from demo-dev" in protocol_line(card)


def test_mcqa_eval_similar_shots_scores_each_question_with_its_own_examples(tmp_path, data_dir, capsys):
    out = tmp_path / "r.json"
    argv = ["--base-model", "tiny-random-llama", "--no-4bit", "--data-dir", str(data_dir), "--limit", "5"]
    assert mcqa_eval([*argv, "--shots", "2", "--shot-selection", "similar", "--output", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["meta"]["eval_protocol"]["shot_selection"] == "similar"
    assert report["meta"]["protocol"]["shot_selection"] == "similar" and report["n"] == 5
    assert len(report["meta"]["fewshot"]["shot_ids_per_row"]) == 5
    assert mcqa_eval([*argv, "--shot-selection", "similar"]) == 2  # no --shots: refused before loading
    assert "give --shots K as well" in capsys.readouterr().err
