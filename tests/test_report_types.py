"""The typed report: a report saved by the code before `measure` (cut to a few predictions) is still a `Report`
the app's readers draw, and a report `measure` writes now has every key and meta field the saved one has."""

from __future__ import annotations

import json

from mcqa_core.evaluation.eval_rows import EvalRows
from mcqa_core.evaluation.measure import measure
from mcqa_core.evaluation.protocol import EvalProtocol, protocol_card, protocol_line
from mcqa_core.evaluation.report_types import report_problems
from mcqa_core.evaluation.scorers import LetterScorer
from mcqa_core.service.reports import changed_answers, subject_table, with_statistics

from .conftest import REPO
from .test_evaluate import answer_changing_adapter  # noqa: F401  (a fixture)
from .test_evaluate import loaded_adapter as loaded_adapter  # a fixture the tests take by name

SAVED = REPO / "tests" / "fixtures" / "report-written-2026-12-07.json"


def test_a_report_saved_before_reads_as_a_report_and_draws():
    saved = json.loads(SAVED.read_text())
    assert report_problems(saved) == [] and report_problems(saved["base"]) == []
    drawn = with_statistics(saved)
    assert drawn["vs_base"]["p_value"] == saved["vs_base"]["p_value"]
    assert subject_table(drawn)[0]["n"] >= subject_table(drawn)[-1]["n"]
    assert "32 heldout rows" in protocol_line(protocol_card(saved))
    assert set(changed_answers(saved)) == {"fixed", "broken", "other"}


def test_a_damaged_report_is_named_by_what_it_lacks():
    saved = json.loads(SAVED.read_text())
    del saved["accuracy_ci"]
    saved["n"] = "32"
    assert report_problems(saved) == ["no 'accuracy_ci'", "'n' is str, not int"]
    assert report_problems([1]) == ["a report is a JSON object, not list"]


def test_measure_writes_every_key_a_saved_report_has(loaded_adapter, validation_rows):
    saved = json.loads(SAVED.read_text())
    report = measure(LetterScorer(loaded_adapter), EvalRows(validation_rows[:6]), EvalProtocol(compare_base=True))
    assert report_problems(report) == []
    assert set(saved) - {"overlap"} <= set(report)  # overlap: the training report's own part
    assert set(saved["meta"]) - {"device", "load_in_4bit"} <= set(report["meta"])  # the caller's context
    assert report["meta"]["eval_protocol"]["compare_base"] is True
