"""Deciding between adapters: the leaderboard from one command (three adapters and their base on the same rows),
Holm-corrected pairwise tests against values computed here, and saved reports reused."""

from __future__ import annotations

import json
from itertools import combinations

import pytest
from scipy.stats import binomtest

from mcqa_core.cli.eval_command import main as mcqa_eval
from mcqa_core.evaluation.leaderboard import pairwise, settings_that_differ
from mcqa_core.evaluation.stats import holm

from .app_helpers import make_tiny_adapter


def test_holm_against_its_definition():
    p = [0.01, 0.04, 0.03, 0.005]
    # sorted: .005 x4 = .02, .01 x3 = .03, .03 x2 = .06, .04 x1 = .04 -> kept monotone: .06
    assert holm(p) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0]) and holm([]) == []


def test_pairwise_tests_use_the_same_questions_and_holm_over_every_pair():
    def report(hits):
        return {"predictions": [{"id": i, "pred": "A", "gold": "A" if h else "B"} for i, h in enumerate(hits)]}

    answers = {"a": [1] * 30 + [0] * 10, "b": [1] * 18 + [0] * 22, "c": [1] * 20 + [0] * 20}
    entries = [{"name": k, "report": report(v)} for k, v in answers.items()]
    pairs = pairwise(entries)
    assert [(p["a"], p["b"]) for p in pairs] == list(combinations("abc", 2))
    raw = []
    for (x, y), p in zip(combinations("abc", 2), pairs):
        only_x = sum(a and not b for a, b in zip(answers[x], answers[y]))
        only_y = sum(b and not a for a, b in zip(answers[x], answers[y]))
        raw.append(binomtest(only_x, only_x + only_y, 0.5).pvalue if only_x + only_y else 1.0)
        assert p["questions"] == 40 and p["test"]["p_value"] == pytest.approx(raw[-1])
    for p, adjusted in zip(pairs, holm(raw)):
        assert p["p_holm"] == pytest.approx(adjusted) and p["significant"] == (adjusted < 0.05)
    assert pairs[0]["significant"] and not pairs[2]["significant"]  # a vs b: 12 against 0; b vs c: 0 against 2


def test_settings_that_differ_leave_paths_out():
    runs = [
        {"settings": {"lora": {"r": 16}, "train": {"learning_rate": 3e-4, "output_dir": "a"}}},
        {"settings": {"lora": {"r": 8}, "train": {"learning_rate": 3e-4, "output_dir": "b"}}},
    ]
    assert settings_that_differ(runs) == ["lora.r"]


def test_a_leaderboard_of_three_adapters_and_their_base_from_one_command(tmp_path, tiny_model_path, data_dir, capsys):
    adapters = tmp_path / "adapters"
    for seed, rank in ((1, 4), (2, 8), (3, 16)):
        settings = {"lora": {"r": rank}, "train": {"learning_rate": 1e-3, "output_dir": f"adapters/r{rank}"}}
        make_tiny_adapter(adapters / f"r{rank}", tiny_model_path, seed=seed, settings=settings)
    out = tmp_path / "board"
    argv = ["--leaderboard", "--adapters-dir", str(adapters), "--data-dir", str(data_dir), "--limit", "24"]
    assert mcqa_eval([*argv, "--no-4bit", "--output", str(out)]) == 0
    board = json.loads((out / "leaderboard.json").read_text())
    names = {e["name"] for e in board["entries"]}
    assert names == {"r4", "r8", "r16", "base tiny-random-llama"} and all(e["n"] == 24 for e in board["entries"])
    accuracies = [e["accuracy"] for e in board["entries"]]
    assert accuracies == sorted(accuracies, reverse=True)  # best first
    assert board["differing_settings"] == ["lora.r"] and {e["settings"].get("lora.r") for e in board["entries"]} == {
        4, 8, 16, None
    }  # fmt: skip
    assert len(board["pairs"]) == 6 and all("p_holm" in p for p in board["pairs"])
    assert board["protocol"] == {"prompt": "course-v1", "shots": 0, "shot_selection": None, "scoring": "letter",
                                 "split": "heldout", "rows": 24}  # fmt: skip
    printed = capsys.readouterr()
    assert printed.err.count("scoring 24 questions") == 3  # the base came with the first adapter (adapter off)
    assert "Holm p =" in printed.out
    # again: every report is reused, nothing is scored
    assert mcqa_eval([*argv, "--no-4bit", "--output", str(out)]) == 0
    again = capsys.readouterr()
    assert "scoring" not in again.err and again.err.count("reused a saved report") == 3
    assert json.loads((out / "leaderboard.json").read_text())["entries"] == [
        dict(e, reused=True) for e in board["entries"]
    ]


def test_the_evaluate_page_shows_the_leaderboard_and_any_two_side_by_side(
    monkeypatch, tmp_path, tiny_model_path, data_dir
):
    from .test_app import open_app, shown

    adapters, reports = tmp_path / "adapters", tmp_path / "reports"
    for seed in (1, 2, 3):
        make_tiny_adapter(adapters / f"seed{seed}", tiny_model_path, seed=seed)
    monkeypatch.setenv("MCQA_REPORTS_DIR", str(reports))
    argv = ["--leaderboard", "--adapters-dir", str(adapters), "--data-dir", str(data_dir), "--limit", "16", "--no-4bit"]
    assert mcqa_eval(argv) == 0
    for key, value in (("MCQA_APP_BASE_MODEL", "tiny-random-llama"), ("MCQA_APP_4BIT", "0")):
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("MCQA_ADAPTERS_DIR", str(adapters))
    monkeypatch.setenv("MCQA_DATA_DIR", str(data_dir))
    at = open_app("evaluate")
    at.segmented_control(key="evaluate_source").set_value("Leaderboard").run()
    assert not at.exception
    ranking, pairs = at.dataframe[0].value, at.dataframe[1].value
    assert len(ranking) == 4 and set(ranking["model"]) == {"seed1", "seed2", "seed3", "base tiny-random-llama"}
    assert len(pairs) == 6 and {"Holm p", "verdict"} <= set(pairs.columns)
    at.selectbox(key="board_first").set_value("seed1")
    at.selectbox(key="board_second").set_value("base tiny-random-llama").run()
    assert not at.exception
    board = json.loads((reports / "leaderboard-heldout-16" / "leaderboard.json").read_text())
    entry = next(e for e in board["entries"] if e["name"] == "seed1")
    assert {m.label: m.value for m in at.metric}["seed1"] == f"{entry['accuracy']:.1%}"
    assert "The first against the second:" in shown(at)
    differ = at.dataframe[-1].value
    from mcqa_core.service.leaderboards import entry_report

    mine, base = (
        entry_report(next(e for e in board["entries"] if e["name"] == n)) for n in ("seed1", "base tiny-random-llama")
    )
    expected = sum(a["pred"] != b["pred"] for a, b in zip(mine["predictions"], base["predictions"]))
    assert len(differ) == expected and set(differ["right"]) <= {"the first", "the second", "neither"}


def test_ask_compares_any_two_models_on_one_question(monkeypatch, tmp_path, tiny_model_path, data_dir):
    from .test_app import fill, open_app

    adapters = tmp_path / "adapters"
    for seed in (1, 2):
        make_tiny_adapter(adapters / f"seed{seed}", tiny_model_path, seed=seed)
    for key, value in (("MCQA_APP_BASE_MODEL", "tiny-random-llama"), ("MCQA_APP_4BIT", "0")):
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("MCQA_ADAPTERS_DIR", str(adapters))
    monkeypatch.setenv("MCQA_DATA_DIR", str(data_dir))
    at = open_app("ask")
    loaded = at.session_state["app_spec"].adapter
    at.toggle(key="ask_compare").set_value(True).run()
    choices = at.selectbox(key="ask_compare_with").options
    other = "seed1" if loaded.endswith("seed2") else "seed2"
    assert choices == ["its base model (adapter off)", other]
    at.selectbox(key="ask_compare_with").set_value(other)
    fill(at, "Which vitamin deficiency causes scurvy?", "Vitamin A", "Vitamin C", "Vitamin D", "Vitamin K")
    at.button(key="ask_submit").click().run()
    assert not at.exception
    result = at.session_state["ask_result"]
    assert result.other_name == other and set(result.answers) == {"adapter", "other"}
    bold = [m.value for m in at.markdown if m.value.startswith("**")]
    assert f"**{other}**" in bold and any(b.startswith("**This model (seed") for b in bold)
    assert result.answers["adapter"].probs != result.answers["other"].probs  # two different adapters


def test_the_sidebar_says_when_its_numbers_were_measured_on_different_rows(monkeypatch, tmp_path, tiny_model_path):
    from .test_app import open_app, shown

    adapters = tmp_path / "adapters"
    make_tiny_adapter(adapters / "a", tiny_model_path, seed=1)
    make_tiny_adapter(adapters / "b", tiny_model_path, seed=2)
    for key, value in (("MCQA_APP_BASE_MODEL", "tiny-random-llama"), ("MCQA_APP_4BIT", "0")):
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("MCQA_ADAPTERS_DIR", str(adapters))
    note = "These numbers were measured on different rows"
    assert note not in shown(open_app("ask"))  # both on the same 16 rows
    run = json.loads((adapters / "b" / "mcqa_run.json").read_text())
    run["metrics"] |= {"report_accuracy": 0.3, "report_rows": 200}
    run["data"]["report_split"] = "heldout"
    (adapters / "b" / "mcqa_run.json").write_text(json.dumps(run))
    assert note in shown(open_app("ask"))


def test_a_bank_leaderboard_takes_its_examples_from_the_banks_other_rows(tmp_path, tiny_model_path):
    adapters = tmp_path / "adapters"
    for seed in (1, 2):
        make_tiny_adapter(adapters / f"s{seed}", tiny_model_path, seed=seed)
    bank = tmp_path / "exam.csv"
    bank.write_text(
        "question,A,B,C,D,answer\n" + "".join(f"Question {i}?,w{i},x{i},y{i},z{i},{'ABCD'[i % 4]}\n" for i in range(40))
    )
    out = tmp_path / "board"
    argv = ["--leaderboard", "--adapters-dir", str(adapters), "--bank", str(bank), "--split", "heldout"]
    assert mcqa_eval([*argv, "--shots", "1", "--no-4bit", "--output", str(out)]) == 0
    report = json.loads((out / "s1.json").read_text())
    assert report["meta"]["fewshot"]["shots_from"].endswith("exam.csv (rest)")
    assert not set(report["meta"]["fewshot"]["shot_ids"]) & {p["id"] for p in report["predictions"]}


def test_training_reports_on_the_same_rows_are_reused_and_open_from_the_board(
    tmp_path, tiny_model_path, data_dir, capsys
):
    from mcqa_core.data.medmcqa import load_split
    from mcqa_core.service.leaderboards import entry_report

    rows = load_split("heldout", data_dir, 12).rows
    adapters = tmp_path / "adapters"
    for seed in (1, 2):
        folder = make_tiny_adapter(adapters / f"t{seed}", tiny_model_path, seed=seed, rows=rows)
        report = json.loads((folder / "eval_report.json").read_text())
        report["meta"]["split"] = "heldout"  # as training writes it
        (folder / "eval_report.json").write_text(json.dumps(report))
    out = tmp_path / "board"
    argv = ["--leaderboard", "--adapters-dir", str(adapters), "--data-dir", str(data_dir), "--limit", "12"]
    assert mcqa_eval([*argv, "--no-4bit", "--output", str(out)]) == 0
    assert "scoring" not in capsys.readouterr().err  # both adapters and their base from the training reports
    board = json.loads((out / "leaderboard.json").read_text())
    assert len(board["entries"]) == 3 and all(e["reused"] for e in board["entries"])
    for e in board["entries"]:  # each entry opens from the board (the app's side by side reads them)
        assert e["report"].endswith("eval_report.json") and entry_report(e)["accuracy"] == e["accuracy"]
