"""Nothing of the server for visitors: every page, drawn for a session that is not the operator, shows no absolute
path of this machine (the repository, the data folder, the adapters folder, the reports folder, the model cache, the
home folder); the operator still reads them (docs/app.md, Who may do what)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from streamlit.testing.v1.element_tree import Dataframe

from mcqa_core.models.offline import mcqa_cache_dir
from mcqa_core.service import train_launcher as runs
from mcqa_core.service.server_paths import DATA_NAME, LOCAL_VALIDATION, ServerPlaces
from mcqa_core.training.status_files import STATUS_FILE
from mcqa_core.training.trackers import TENSORBOARD_DIR

from . import test_app
from .app_helpers import make_tiny_adapter
from .conftest import REPO
from .test_app import fill, open_app

app_env = test_app.app_env
KEY = "visitor-view-key"
NAME = "tiny-lora"


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_model_path, data_dir):
    """An adapters folder as a server has one: an adapter with its report, TensorBoard logs and the log of the run
    the app started, a newer run that failed (its error and log naming server folders), and a reports folder with
    a leaderboard and a suite, scored the way `mcqa-eval` writes them."""
    from mcqa_core.cli.eval_command import main as mcqa_eval
    from mcqa_core.data.medmcqa import load_split

    root = tmp_path_factory.mktemp("server")
    adapters, reports = root / "adapters", root / "reports"
    folder = make_tiny_adapter(adapters / NAME, tiny_model_path, rows=load_split("heldout", data_dir, 12).rows)
    report = json.loads((folder / "eval_report.json").read_text())
    report["meta"] |= {"split": "heldout", "source": str(Path(data_dir).resolve())}  # as training writes it
    (folder / "eval_report.json").write_text(json.dumps(report))
    (folder / TENSORBOARD_DIR).mkdir()
    argv = ["--preset", "cpu-demo", "--output-dir", str(folder), "--data-dir", str(Path(data_dir).resolve())]
    launched(folder, argv, {"state": "done"}, [f"[data] rows from {Path(data_dir).resolve()}", f"saved {folder}"])
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MCQA_REPORTS_DIR", str(reports))
        common = ["--no-4bit", "--data-dir", str(data_dir)]
        assert mcqa_eval(["--leaderboard", "--adapters-dir", str(adapters), "--limit", "12", *common]) == 0
        (adapters / "unscored.csv").write_text("question,A,B,C,D\nWhich organ pumps blood?,Lung,Heart,Liver,Skin\n")
        suite = reports / "visitor.yaml"
        suite.write_text(
            f"name: visitor\nsets:\n  - name: medmcqa\n    split: heldout\n"
            f"  - name: unscored\n    bank: {adapters / 'unscored.csv'}\n"
        )
        assert mcqa_eval(["--adapter", str(folder), "--suite", str(suite), "--limit", "4", *common]) == 0
    failed = adapters / "failed-run"
    failed.mkdir()
    error = f"no MedMCQA rows in {Path(data_dir).resolve()} for {failed}"
    launched(failed, ["--preset", "smoke", "--output-dir", str(failed)], {"state": "failed", "error": error}, [error])
    return adapters, reports


def launched(out: Path, argv: list[str], status: dict, log: list[str]) -> None:
    """A run folder as the Train page's Start leaves it (launch.json, train.log, status.json)."""
    (out / runs.LAUNCH_FILE).write_text(json.dumps({"argv": argv}))
    lines = [f"{runs.LAUNCH_MARK} 2026-01-01 00:00:00: {runs.command_line(argv)}", *log]
    (out / runs.LOG_FILE).write_text("\n".join(lines) + "\n")
    (out / STATUS_FILE).write_text(json.dumps(status))


@pytest.fixture
def visitor_env(app_env, server, monkeypatch):
    """The app behind a proxy with an operator key: a session is a visitor until it types the key."""
    adapters, reports = server
    monkeypatch.setenv("MCQA_ADAPTERS_DIR", str(adapters))
    monkeypatch.setenv("MCQA_REPORTS_DIR", str(reports))
    monkeypatch.setenv("MCQA_OPERATOR_LOCAL", "0")
    monkeypatch.setenv("MCQA_OPERATOR_KEY", KEY)
    return adapters, reports


def _strings(message) -> list[str]:
    """Every string field of a protobuf message and of the messages inside it (bytes, such as a table's Arrow data,
    are read through the element instead)."""
    found = []
    for field, value in message.ListFields():
        values = value if field.is_repeated else [value]
        for v in values:
            if isinstance(v, str):
                found.append(v)
            elif hasattr(v, "ListFields"):
                found += _strings(v)
    return found


def drawn_text(at) -> str:
    """All the text a session's run drew, sidebar included, markdown's escapes removed: every string of every
    element and block (markdown, captions, code, text, alerts, metric labels and values, selectbox and radio options
    and captions, expander and tab labels, help, placeholders) and every cell and column name of every table."""
    parts = []

    def walk(node) -> None:
        if isinstance(node, Dataframe):
            parts.append(node.value.to_csv())
        elif hasattr(getattr(node, "proto", None), "ListFields"):
            parts.extend(_strings(node.proto))
        for child in getattr(node, "children", {}).values():
            walk(child)

    walk(at._tree)
    return re.sub(r"\\(.)", r"\1", "\n".join(parts))


def server_folders(adapters: Path, reports: Path, data_dir: Path) -> list[str]:
    places = {REPO, Path(data_dir), adapters, reports, mcqa_cache_dir(), Path.home()}
    return sorted({str(p) for place in places for p in (place, place.resolve())}, key=len, reverse=True)


def leaks(text: str, folders: list[str]) -> list[str]:
    """Each place where the text names a server folder, with a little of what surrounds it."""
    found = [(m.start(), f) for f in folders for m in re.finditer(re.escape(f), text)]
    return [text[max(i - 60, 0) : i + len(f) + 40] for i, f in found]


def test_a_visitor_reads_no_server_folder_on_any_page_and_the_operator_does(visitor_env, data_dir):
    adapters, reports = visitor_env
    seen: dict[str, str] = {}

    def look(at, view: str) -> None:
        assert not at.exception, (view, at.exception)
        seen[view] = drawn_text(at)

    at = open_app("ask")
    look(at, "sidebar and Ask")
    fill(at, "Which vitamin deficiency causes scurvy?", "Vitamin A", "Vitamin C", "Vitamin D", "Vitamin K")
    look(at.button(key="ask_submit").click().run(), "Ask, answered with similar questions")

    at = open_app("browse")
    at.toggle(key="browse_similar_list").set_value(True).run()
    look(at.button(key="browse_ask_list").click().run(), "Browse, a question answered, similar ones")

    at = open_app("evaluate")
    look(at, "Evaluate, the saved report")
    for view in ("Your questions", "Suites", "Leaderboard"):
        look(at.segmented_control(key="evaluate_source").set_value(view).run(), f"Evaluate, {view}")
    at.segmented_control(key="evaluate_source").set_value("MedMCQA").run()
    at.number_input(key="evaluate_n").set_value(4)
    look(at.button(key="evaluate_run").click().run(), "Evaluate, a run here")

    look(open_app("train"), "Train")

    folders = server_folders(adapters, reports, data_dir)
    found = {view: hits for view, text in seen.items() if (hits := leaks(text, folders))}
    assert not found, "\n".join(f"{view}: {hit!r}" for view, hits in found.items() for hit in hits)
    # The pages drew their full content, for a visitor, with neutral names where the folders were.
    assert "Operator key" in seen["sidebar and Ask"] and "is for the app's operator" in seen["Train"]
    assert "similar question 1" in seen["Ask, answered with similar questions"]
    assert "source: MedMCQA validation (local copy)" in seen["Browse, a question answered, similar ones"]
    assert f"Report written at training end: adapters/{NAME}/eval_report.json" in seen["Evaluate, the saved report"]
    assert "Run here on the first 4 heldout questions" in seen["Evaluate, a run here"]
    assert "adapters/unscored.csv has no answers to score" in seen["Evaluate, Suites"]
    assert "reports/leaderboard-heldout-12/leaderboard.json" in seen["Evaluate, Leaderboard"]
    train = seen["Train"]
    assert f"--logdir adapters/{NAME}/{TENSORBOARD_DIR}" in train and "Past runs" in train
    assert "The run failed: no MedMCQA rows in MedMCQA data (local copy) for adapters/failed-run" in train

    operator = drawn_text(open_app("train", operator_key=KEY))
    assert f"--logdir {adapters / NAME / TENSORBOARD_DIR}" in operator  # the same command, whole, for the operator
    assert f"source: {Path(data_dir).resolve()}" in drawn_text(open_app("browse", operator_key=KEY))


def test_server_text_names_the_folders_hides_the_address_and_keeps_the_rest(tmp_path, data_dir):
    """What the page-level test cannot read: the report a visitor downloads (its meta names the adapter's, the data's
    and the cached model's folders) and the answer server's address in an error."""
    adapters, data = tmp_path / "adapters", str(Path(data_dir).resolve())
    places = ServerPlaces.of(adapters, data_dir, "http://10.0.0.5:8080/v1")
    meta = {
        "adapter": str(adapters / NAME),
        "source": data,
        "base_model_resolved": str(mcqa_cache_dir() / "tiny-random-llama-v2"),
        "fewshot": {"shots_from": "/srv/banks/exam.csv (rest)"},
        "code": str(REPO / "configs"),
        "notes": str(Path.home() / "notes.txt"),
    }
    question = "5 mg/kg/day, or 10 mg/kg? See https://example.org/a/b (and/or /c)"
    hidden = json.loads(places.hide(json.dumps({"meta": meta, "question": question})))
    assert hidden["meta"] == {
        "adapter": f"adapters/{NAME}",
        "source": DATA_NAME,
        "base_model_resolved": "the model cache/tiny-random-llama-v2",
        "fewshot": {"shots_from": "…/exam.csv (rest)"},
        "code": "./configs",
        "notes": "~/notes.txt",
    }
    assert hidden["question"] == question
    said = "cannot reach the server at http://10.0.0.5:8080/v1 (timed out)"
    assert places.hide(said) == "cannot reach the server at [address hidden] (timed out)"
    assert places.hide(f"{adapters}-old/x") == "…/x"  # a neighbour of a named folder is not that folder
    assert places.source(data) == LOCAL_VALIDATION and places.source("hub:openlifescienceai/medmcqa").startswith("hub:")
    assert places.source("exam.csv (uploaded, this session only)") == "exam.csv (uploaded, this session only)"
