"""`mcqa-eval --suite`: one file per format written here, one set missing; one table, a summary, a report per set."""

from __future__ import annotations

import json

import pytest

from mcqa_core.cli.eval_command import main as mcqa_eval
from mcqa_core.evaluation.suite import NOT_HERE, macro_average, read_suite, suite_names

from .test_banks import QUESTIONS, headqa_file, medqa_file, write_parquet
from .test_passages import pubmedqa_file


def mmlu_two_subjects(tmp_path):
    records = [
        {"question": q, "subject": subject, "choices": o, "answer": c}
        for subject in ("anatomy", "college_medicine")
        for _, q, o, c in QUESTIONS
    ]
    return write_parquet(tmp_path / "mmlu.parquet", records)


def suite_file(tmp_path) -> str:
    files = {
        "medqa": medqa_file(tmp_path),
        "pubmedqa": pubmedqa_file(tmp_path),
        "mmlu": mmlu_two_subjects(tmp_path),
        "headqa": headqa_file(tmp_path),
    }
    path = tmp_path / "mine.yaml"
    path.write_text(
        "name: mine\nsets:\n"
        "  - name: medmcqa\n    split: heldout\n"
        f"  - name: medqa-4\n    bank: {files['medqa'].name}\n"  # beside the suite file
        f"  - name: pubmedqa\n    bank: {files['pubmedqa']}\n"
        f"  - name: mmlu-anatomy\n    bank: {files['mmlu']}\n    subject: anatomy\n"
        f"  - name: mmlu-college-medicine\n    bank: {files['mmlu']}\n    subject: college_medicine\n"
        f"  - name: headqa\n    bank: {files['headqa']}\n    format: headqa\n"  # its qid repeats: not an id
        f"  - name: missing\n    bank: {tmp_path / 'not-here.csv'}\n"
    )
    return str(path)


def test_a_suite_scores_every_set_it_can_and_lists_the_one_it_cannot(tmp_path, smoke_adapter, data_dir, capsys):
    adapter, _ = smoke_adapter
    out = tmp_path / "reports"
    argv = ["--adapter", str(adapter), "--data-dir", str(data_dir), "--suite", suite_file(tmp_path)]
    assert mcqa_eval([*argv, "--limit", "6", "--compare-base", "--output", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    by_name = {e["name"]: e for e in summary["sets"]}
    assert list(by_name) == [
        "medmcqa", "medqa-4", "pubmedqa", "mmlu-anatomy", "mmlu-college-medicine", "headqa", "missing"
    ]  # fmt: skip
    assert by_name["missing"]["status"] == "not scored" and by_name["missing"]["reason"] == NOT_HERE
    scored = [e for e in summary["sets"] if e["status"] == "scored"]
    assert [e["n"] for e in scored] == [6, 4, 4, 4, 4, 4]
    for e in scored:  # each set's own report, with the base on the same rows and the paired test
        report = json.loads((out / e["report"]).read_text())
        assert report["accuracy"] == e["accuracy"] and report["base"]["n"] == e["n"] and "p_value" in e["vs_base"]
        assert report["meta"]["suite_set"] == e["name"] and report["meta"]["protocol"]["rows"] == e["n"]
    pubmed = json.loads((out / "pubmedqa.json").read_text())
    assert all(len(p["probs"]) == 3 for p in pubmed["predictions"])  # yes / no / maybe
    mean = sum(e["accuracy"] for e in scored) / len(scored)
    assert summary["macro"]["sets"] == 6 and summary["macro"]["accuracy"] == pytest.approx(mean)
    assert summary["macro_base"]["accuracy"] == pytest.approx(sum(e["base_accuracy"] for e in scored) / 6)
    assert summary["protocol"]["scoring"] == "letter" and summary["protocol"]["shots"] == 0
    printed = capsys.readouterr().out
    assert f"missing                          -  {NOT_HERE}" in printed
    assert "macro average (6 sets)" in printed and "mmlu-college-medicine" in printed


def test_k_shot_suite_sets_never_report_their_examples(tmp_path, data_dir):
    out = tmp_path / "r"
    argv = ["--base-model", "tiny-random-llama", "--no-4bit", "--data-dir", str(data_dir), "--shots", "2"]
    assert mcqa_eval([*argv, "--suite", suite_file(tmp_path), "--limit", "6", "--output", str(out)]) == 0
    for name in ("medmcqa", "medqa-4", "headqa"):
        report = json.loads((out / f"{name}.json").read_text())
        shots = set(report["meta"]["fewshot"]["shot_ids"])
        assert len(shots) == 2 and not shots & {p["id"] for p in report["predictions"]}
    assert json.loads((out / "medqa-4.json").read_text())["n"] == 2  # a 4-row bank: 2 examples, 2 reported


def test_the_medical_suite_is_built_in_and_offline_it_still_scores_medmcqa(tmp_path, data_dir, capsys):
    assert "medical" in suite_names()
    names = [s.name for s in read_suite("medical").sets]
    assert names[:3] == ["medmcqa", "medqa-4", "pubmedqa"] and len(names) == 10 and names[-1] == "headqa"
    out = tmp_path / "m"
    argv = ["--base-model", "tiny-random-llama", "--no-4bit", "--data-dir", str(data_dir), "--limit", "4"]
    assert mcqa_eval([*argv, "--suite", "medical", "--output", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert [e["status"] for e in summary["sets"]].count("scored") == 1 and summary["macro"]["sets"] == 1


@pytest.mark.parametrize(
    "text,words",
    [
        ("name: x\nsets:\n  - name: a\n    colour: red\n", "set 1 (a): unknown key 'colour'"),
        ("name: x\nsets:\n  - name: a\n  - name: a\n", "the name 'a' is given twice"),
        ("name: x\nsets: []\n", "a non-empty list `sets`"),
    ],
)
def test_a_bad_suite_file_is_one_line_before_anything_loads(tmp_path, capsys, text, words):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    assert mcqa_eval(["--base-model", "tiny-random-llama", "--suite", str(path)]) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err


def test_suite_flags_that_conflict_are_refused(capsys):
    assert mcqa_eval(["--base-model", "m", "--suite", "medical", "--bank", "x.csv", "--split", "all"]) == 2
    err = capsys.readouterr().err
    assert "drop --bank" in err and "drop --split" in err
    assert mcqa_eval(["--base-model", "m", "--suite", "nonesuch"]) == 2
    assert "no such suite; built in: medical" in capsys.readouterr().err


def test_macro_average_interval_from_each_sets_variance():
    entries = [
        {"status": "scored", "n": 100, "accuracy": 0.5},
        {"status": "scored", "n": 400, "accuracy": 0.8},
        {"status": "not scored"},
    ]
    m = macro_average(entries)
    se = ((0.25 / 100 + 0.16 / 400) ** 0.5) / 2
    assert m["sets"] == 2 and m["accuracy"] == pytest.approx(0.65)
    assert m["ci"] == pytest.approx([0.65 - 1.959964 * se, 0.65 + 1.959964 * se], abs=1e-6)


def test_the_evaluate_page_shows_a_suites_table_and_opens_each_sets_report(monkeypatch, tmp_path, data_dir):
    from app_ui.markdown_text import md_escape

    from .test_app import open_app, shown

    reports = tmp_path / "reports"
    monkeypatch.setenv("MCQA_REPORTS_DIR", str(reports))  # where mcqa-eval writes and the app looks
    suite = tmp_path / "two.yaml"
    suite.write_text(
        "name: two\nsets:\n  - name: medmcqa\n    split: heldout\n"
        f"  - name: pubmedqa\n    bank: {pubmedqa_file(tmp_path)}\n"
        f"  - name: missing\n    bank: {tmp_path / 'gone.csv'}\n"
    )
    argv = ["--base-model", "tiny-random-llama", "--no-4bit", "--data-dir", str(data_dir), "--limit", "5"]
    assert mcqa_eval([*argv, "--suite", str(suite)]) == 0
    for key, value in (("MCQA_APP_BASE_MODEL", "tiny-random-llama"), ("MCQA_APP_4BIT", "0")):
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("MCQA_ADAPTERS_DIR", str(tmp_path))
    monkeypatch.setenv("MCQA_DATA_DIR", str(data_dir))
    at = open_app("evaluate")
    at.segmented_control(key="evaluate_source").set_value("Suites").run()
    assert not at.exception
    table = at.dataframe[0].value
    assert list(table["set"]) == ["medmcqa", "pubmedqa", "missing", "macro average (2 sets)"]
    assert list(table["n"])[:2] == [5, 4] and list(table["status"])[2] == NOT_HERE
    assert md_escape("Every set measured on prompt course-v1, 0-shot, letter scoring") in shown(at)
    at.selectbox(key="evaluate_suite_set").set_value("pubmedqa").run()
    assert not at.exception
    report = json.loads((reports / "suite-two-tiny-random-llama" / "pubmedqa.json").read_text())
    assert {m.label: m.value for m in at.metric}["Base model"] == f"{report['accuracy']:.1%}"
    assert md_escape("Measured on 4 rows of pubmedqa.jsonl (all); prompt course-v1") in shown(at)
