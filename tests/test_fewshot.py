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
