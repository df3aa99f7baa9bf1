"""Your own questions through the commands and the app's logic: evaluate a bank, train on one, ask a
five-option question, download the results; the MedMCQA path stays byte-for-byte what it was."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest

from mcqa_core.data.prompt import PROMPT_TEMPLATE, format_prompt
from mcqa_core.service import adapters, questions
from mcqa_core.service.uploads import read_upload, results_csv

from .conftest import REPO


def _bank(path, n=40):
    """A CSV of 3-, 4- and 5-option questions with letter answers and a subject."""
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "question", "A", "B", "C", "D", "E", "answer", "subject"])
        for i in range(n):
            k = 3 + i % 3
            options = [f"option {j} of question {i}" for j in range(k)] + [""] * (5 - k)
            writer.writerow([f"q{i}", f"Question {i}: which option is right?", *options, "ABCDE"[i % k], f"S{i % 2}"])
    return path


def test_medmcqa_prompts_are_byte_identical(validation_rows):
    assert all(format_prompt(r) == PROMPT_TEMPLATE.format(**r) for r in validation_rows)


def test_evaluate_a_bank_from_the_command_line(tmp_path):
    bank = _bank(tmp_path / "quiz.csv", 12)
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "mcqa_core.cli.eval_command",
            "--base-model",
            "tiny-random-llama",
            "--no-4bit",
            "--bank",
            str(bank),
            "--output",
            str(tmp_path / "r.json"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["n"] == 12 and report["confusion"]["labels"] == ["A", "B", "C", "D", "E"]
    assert report["meta"]["bank"]["mapping"]["answer_as"] == "letter" and set(report["per_subject"]) == {"S0", "S1"}
    assert sorted({len(p["probs"]) for p in report["predictions"]}) == [3, 4, 5]
    # the same bank named through the mapping flags gives the same rows
    r2 = subprocess.run(
        [
            sys.executable,
            "-m",
            "mcqa_core.cli.eval_command",
            "--base-model",
            "tiny-random-llama",
            "--no-4bit",
            "--bank",
            str(bank),
            "--option-cols",
            "A,B,C,D,E",
            "--answer-col",
            "answer",
            "--answer-as",
            "letter",
            "--output",
            str(tmp_path / "r2.json"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r2.returncode == 0, r2.stderr[-2000:]
    assert json.loads((tmp_path / "r2.json").read_text())["predictions"] == report["predictions"]


def test_train_on_a_bank_records_it(tmp_path, data_dir):
    from mcqa_core.training.run import run_training
    from mcqa_core.training.settings import load_config

    bank = _bank(tmp_path / "quiz.csv")
    record = run_training(
        load_config(
            [
                "--preset",
                "smoke",
                "--bank",
                str(bank),
                "--output-dir",
                str(tmp_path / "a"),
                "--max-steps",
                "2",
                "--eval-steps",
                "2",
                "--save-steps",
                "2",
            ]
        )
    )
    data = record["data"]
    assert (
        data["bank"]["format"] == "csv"
        and data["bank"]["rows"] == 40
        and data["bank"]["mapping"]["question"] == "question"
    )
    assert (data["train_split"], data["eval_split"], data["report_split"]) == (
        "quiz.csv (train)",
        "quiz.csv (dev)",
        "quiz.csv (heldout)",
    )
    assert data["train_rows_used"] + data["eval_rows_used"] + record["metrics"]["report_rows"] == 40
    line = adapters.describe_run(record)["bank"]
    assert line.startswith(
        "quiz.csv (csv, 40 questions; question question, options A, B, C, D, E, answer answer as letter"
    )


def test_ask_takes_an_optional_fifth_option():
    four = questions.check_input("Q?", ["a", "b", "c", "d"])
    assert "ope" not in four.row and format_prompt(four.row) == PROMPT_TEMPLATE.format(
        question="Q?", opa="a", opb="b", opc="c", opd="d"
    )
    five = questions.check_input("Q?", ["a", "b", "c", "d", "e"])
    assert five.row["ope"] == "e" and five.allowed == ["A", "B", "C", "D", "E"] and "E. e." in format_prompt(five.row)
    three = questions.check_input("Q?", ["a", "b", "c", "", ""])
    assert three.row["opd"] == questions.UNFILLED_OPTION and "ope" not in three.row and three.allowed == ["A", "B", "C"]


def test_uploads_are_read_outside_the_repository_and_results_download(tmp_path):
    data = _bank(tmp_path / "quiz.csv", 3).read_bytes()
    records, columns, fmt = read_upload("quiz.csv", data)
    assert fmt == "csv" and len(records) == 3 and columns[:2] == ["id", "question"]
    assert not list(REPO.glob("quiz.csv"))
    report = {
        "predictions": [
            {"id": "q0", "pred": "B", "gold": "A", "probs": [0.2, 0.7, 0.1]},
            {"id": "q1", "pred": "B", "gold": "B", "probs": [0.1, 0.6, 0.2, 0.1]},
        ]
    }
    rows = [
        {"id": "q0", "question": "First?", "opa": "x", "opb": "y", "opc": "z"},
        {"id": "q1", "question": "Second?", "opa": "x", "opb": "y", "opc": "z", "opd": "w"},
    ]
    lines = list(csv.DictReader(results_csv(report, rows).splitlines()))
    assert [ln["correct"] for ln in lines] == ["False", "True"] and lines[0]["p_D"] == "" and lines[1]["p_D"] == "0.1"
    assert lines[0]["question"] == "First?" and lines[1]["options"] == "x | y | z | w"


def test_an_upload_over_the_limit_is_refused(monkeypatch):
    from mcqa_core.errors import DataError
    from mcqa_core.service import uploads

    monkeypatch.setattr(uploads, "MAX_UPLOAD_MB", 0.001)
    with pytest.raises(DataError, match="the limit is"):
        read_upload("big.csv", b"x" * 5000)


def test_the_app_serves_this_machine_only_and_caps_uploads_at_the_bank_limit():
    """`streamlit run app.py` reads .streamlit/config.toml: Streamlit's defaults (every interface, 200 MB) would
    let any visitor start training runs, and accept files the page then refuses."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    from mcqa_core.data.banks.bank_files import MAX_UPLOAD_MB

    server = tomllib.loads((REPO / ".streamlit" / "config.toml").read_text())["server"]
    assert server["address"] == "127.0.0.1"
    assert server["maxUploadSize"] == MAX_UPLOAD_MB
