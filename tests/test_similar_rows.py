"""Similar questions beside every answer: the BM25 index finds a row's near-duplicate, marks a question that is a
row as itself, is built once per data folder, and Ask and Browse draw the block (AppTest, the tiny random Llama)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from app_ui.markdown_text import md_escape
from mcqa_core.data.medmcqa import DERIVED_SPLITS
from mcqa_core.data.overlap import NGRAM, _grams, find_overlap, words
from mcqa_core.data.similar_rows import SimilarRows
from mcqa_core.service import similar_questions as service

from .conftest import REPO
from .test_app import fill, open_app, shown


def split_of(rows: list[dict], split: str) -> list[dict]:
    keep = DERIVED_SPLITS[split][1]
    return [r for r in rows if keep(r["id"])]


@pytest.fixture(autouse=True)
def fresh_indexes():
    service.forget_indexes()
    yield
    service.forget_indexes()


def test_a_rows_near_duplicate_is_among_the_three_found(validation_rows):
    train, heldout = split_of(validation_rows, "demo-train"), split_of(validation_rows, "heldout")
    near = set(find_overlap(train, heldout)["near"])
    row = next(r for r in heldout if r["id"] in near)  # shares a 13-gram with a demo-train row, not its whole text
    twins = {t["id"] for t in train if _grams(words(t), NGRAM) & _grams(words(row), NGRAM)}
    hits = SimilarRows(train, ["demo-train"] * len(train)).search(row)
    assert len(hits) == 3 and twins & {h.row["id"] for h in hits}
    assert hits[0].score >= hits[1].score >= hits[2].score > 0 and hits[0].label == "demo-train"
    # a user's retelling: a word dropped, two swapped, the options in another order, still found
    ws = row["question"].split()
    del ws[1]
    ws[2], ws[3] = ws[3], ws[2]
    retold = {"question": " ".join(ws), "opa": row["opd"], "opb": row["opc"], "opc": row["opb"], "opd": row["opa"]}
    assert row["id"] in {h.row["id"] for h in SimilarRows(validation_rows).search(retold)}


def test_a_data_set_row_is_marked_as_itself_and_never_counted_as_similar(validation_rows):
    index = SimilarRows(validation_rows, name="MedMCQA validation")
    row = validation_rows[7]
    ev = index.evidence(row)
    assert ev.itself.row["id"] == row["id"] and ev.source == "MedMCQA validation" and ev.searched == 4183
    assert len(ev.similar) == 3 and row["id"] not in {h.row["id"] for h in ev.similar}
    typed = {k: row[k] for k in ("question", "opa", "opb", "opc", "opd")}  # the same text typed, no id
    assert index.evidence({**typed, "question": "  " + typed["question"].upper()}).itself.row["id"] == row["id"]
    other = index.evidence({**typed, "opd": "Something else entirely"})  # one option changed: not this row
    assert other.itself is None and other.similar[0].row["id"] == row["id"]
    nothing = index.evidence({"question": "zzzz qqqq", "opa": "xxxx", "opb": "yyyy"})
    assert nothing.itself is None and nothing.similar == []


def test_the_index_is_built_once_per_data_folder(monkeypatch, data_dir, tmp_path):
    built = []

    class Counted(SimilarRows):
        def __init__(self, rows, labels=None, name=""):
            built.append(name)
            super().__init__(rows, labels, name)

    monkeypatch.setattr(service, "SimilarRows", Counted)
    row = {"question": "Which vitamin deficiency causes scurvy?", "opa": "Vitamin A", "opb": "Vitamin C"}
    first, why = service.similar_questions(row, str(data_dir))
    again, _ = service.similar_questions(row, str(data_dir / "." / ""))  # the same folder, spelled otherwise
    assert why == "" and built == ["MedMCQA validation and train"] and first == again
    assert service.medmcqa_index(str(data_dir)) is service.medmcqa_index(str(data_dir))
    assert all("deficiency" in h.row["question"] for h in first.similar)  # vitamin deficiencies, as asked
    other = tmp_path / "other"
    other.mkdir()
    mine = {"id": "x1", "question": "Scurvy is caused by a lack of?", "opa": "C", "opb": "D", "opc": "K", "opd": "A"}
    (other / "validation.jsonl").write_text(json.dumps({**mine, "cop": 0}) + "\n")
    ev, _ = service.similar_questions(row, str(other))
    assert built[1:] == ["MedMCQA validation"] and ev.similar[0].row["id"] == "x1"
    bank = {"name": "mine.csv", "rows": [{**mine, "id": "row-1"}]}
    assert service.similar_questions(row, bank=bank)[0].source == "mine.csv"
    assert service.similar_questions(row, bank=dict(bank))[0].source == "mine.csv" and len(built) == 3
    assert service.similar_questions(row, str(tmp_path / "none")) == (
        None,
        "no data-set rows to search here (no MedMCQA rows could be read)",
    )


@pytest.fixture()
def app_env(monkeypatch, tmp_path, data_dir, tiny_model_path):
    """The app on the tiny model (as tests/test_app.py runs it), with no adapter."""
    (tmp_path / "adapters").mkdir()
    monkeypatch.setenv("MCQA_APP_BASE_MODEL", "tiny-random-llama")
    monkeypatch.setenv("MCQA_APP_4BIT", "0")
    monkeypatch.setenv("MCQA_ADAPTERS_DIR", str(tmp_path / "adapters"))
    monkeypatch.setenv("MCQA_DATA_DIR", str(data_dir))


def test_ask_shows_retrieved_similar_questions_for_a_typed_question_and_browse_offers_them(app_env):
    at = open_app("ask")
    fill(at, "Which vitamin deficiency causes scurvy?", "Vitamin A", "Vitamin C", "Vitamin D", "Vitamin K")
    at.button(key="ask_submit").click().run()
    assert not at.exception
    text = shown(at)
    assert [h.value for h in at.subheader] == ["Similar questions in the data set"]
    assert "not written by the model" in text
    assert "MedMCQA validation and train (4,283 rows)" in text and ":blue-badge[this question]" not in text
    cards = [m.value for m in at.markdown if m.value.startswith(":violet-badge[similar question")]
    assert len(cards) == 3 and all("MedMCQA" in c for c in cards)
    assert len(re.findall(r"Similarity: BM25 \d+\.\d", text)) == 3 and text.count("**correct answer**") >= 3
    explained = [e for e in at.expander if e.label.startswith("Expert explanation")]
    assert len(explained) + text.count("has no explanation for this question") == 3  # each its own, or says none

    at.button(key="ask_random").click().run()  # a MedMCQA row: its own row first, marked, then three others
    at.button(key="ask_submit").click().run()
    text, sample = shown(at), at.session_state["ask_source"]
    assert text.count(":blue-badge[this question]") == 1 and f"id {md_escape(sample['id'])}" in text
    assert len([m for m in at.markdown if m.value.startswith(":violet-badge[similar question")]) == 3
    assert ("Its own explanation is shown above." in text) == bool(sample.get("exp"))

    browse = open_app("browse")
    browse.toggle(key="browse_similar_list").set_value(True).run()
    assert not browse.exception
    text = shown(browse)
    assert "This row itself is not counted" in text and len(re.findall(r"Similarity: BM25", text)) == 3


def test_retrieval_benchmark_quick(data_dir):
    done = subprocess.run(
        [sys.executable, "bench/retrieval.py", "--quick"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "MCQA_DATA_DIR": str(data_dir)},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for name in ("twins", "perturbed", "reworded"):
        m = re.search(rf"^bm25 {name}: recall@3 (\d+)/(\d+) = \d+%; query median \d+\.\d ms", done.stdout, re.M)
        assert m and int(m.group(2)) > 0, done.stdout
    assert re.search(r"^bm25 index of app rows \(4,283 rows\): built in \d+\.\d\d s", done.stdout, re.M)
