"""Answer or abstain: thresholds chosen on one set of scores and applied unchanged to another, on scores whose
ordering is known."""

from __future__ import annotations

import json

import pytest

from mcqa_core.evaluation.letter_scoring import LetterScore
from mcqa_core.evaluation.selective import abstention, at_threshold, parse_rule, threshold_for
from mcqa_core.evaluation.stats import wilson

CONF = [0.9, 0.8, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3]
HITS = [True, True, False, True, False, True, False, False]


def test_thresholds_for_a_coverage_or_an_accuracy_never_split_tied_confidences():
    assert threshold_for(CONF, HITS, coverage=0.5) == 0.7  # the 4 most confident
    # accuracy of the top k: 1, 1 (k=2 ends inside the 0.8 tie), 2/3, 3/4, 3/5, 4/6, 4/7, 4/8
    assert threshold_for(CONF, HITS, accuracy=0.75) == 0.7  # k = 4; k = 2 would split the tie at 0.8
    assert threshold_for(CONF, HITS, accuracy=0.95) == 0.9
    assert threshold_for(CONF, [False] * 8, accuracy=0.5) is None
    got = at_threshold(CONF, HITS, 0.7)
    assert (got["answered"], got["coverage"], got["accuracy"]) == (4, 0.5, 0.75)
    assert got["accuracy_ci"] == pytest.approx(wilson(3, 4)) and got["coverage_ci"] == pytest.approx(wilson(4, 8))


def test_a_threshold_chosen_on_dev_scores_is_applied_unchanged_to_the_reported_ones():
    def scores(confs, hits):
        return [LetterScore(str(i), [c, 0.0], 1.0, "A" if h else "B") for i, (c, h) in enumerate(zip(confs, hits))]

    dev = scores(CONF, HITS)
    reported = scores([0.95, 0.75, 0.72, 0.65, 0.55], [True, False, True, True, False])
    out = abstention(dev, reported, "coverage=0.5", "dev")
    assert out["threshold"] == 0.7 and out["dev"]["answered"] == 4
    assert out["reported"]["answered"] == 3 and out["reported"]["accuracy"] == pytest.approx(2 / 3)
    assert abstention(dev, reported, "accuracy=0.99", "dev")["threshold"] == 0.9
    assert "no threshold reaches" in abstention(scores(CONF, [False] * 8), reported, "accuracy=0.5", "dev")["reason"]
    assert parse_rule("coverage=0.8") == ("coverage", 0.8) and parse_rule("coverage=1.5") is None
    assert parse_rule("recall=0.5") is None and parse_rule("accuracy") is None


def test_mcqa_eval_abstain_chooses_on_the_dev_slice_and_states_both(tmp_path, data_dir, capsys):
    import json

    from mcqa_core.cli.eval_command import main as mcqa_eval

    out = tmp_path / "r.json"
    argv = ["--base-model", "tiny-random-llama", "--no-4bit", "--data-dir", str(data_dir), "--limit", "12"]
    assert mcqa_eval([*argv, "--abstain", "coverage=0.5", "--output", str(out)]) == 0
    report = json.loads(out.read_text())
    ab = report["abstain"]
    assert ab["chosen_on"] == "demo-dev" and ab["dev_rows"] == 12 and ab["dev"]["answered"] == 6
    conf = [max(p["probs"]) for p in report["predictions"]]
    assert ab["reported"]["answered"] == sum(c >= ab["threshold"] for c in conf)
    assert "answering above" in capsys.readouterr().out
    assert mcqa_eval([*argv, "--abstain", "coverage=2", "--output", str(tmp_path / "x.json")]) == 2
    assert "--abstain 'coverage=2': give coverage=C or accuracy=A" in capsys.readouterr().err


def test_ask_abstains_below_the_threshold_its_report_suggests(monkeypatch, tmp_path, data_dir, tiny_model_path):
    from mcqa_core.data.medmcqa import is_heldout, load_split

    from .app_helpers import make_tiny_adapter
    from .test_app import fill, open_app, shown

    rows = [r for r in load_split("validation", data_dir).rows if is_heldout(r["id"])][:12]
    make_tiny_adapter(tmp_path / "adapters" / "tiny-lora", tiny_model_path, rows=rows)
    for key, value in (("MCQA_APP_BASE_MODEL", "tiny-random-llama"), ("MCQA_APP_4BIT", "0")):
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("MCQA_ADAPTERS_DIR", str(tmp_path / "adapters"))
    monkeypatch.setenv("MCQA_DATA_DIR", str(data_dir))
    at = open_app("ask")
    at.toggle(key="ask_abstain").set_value(True).run()
    report = json.loads((tmp_path / "adapters" / "tiny-lora" / "eval_report.json").read_text())
    suggested = report["risk_coverage"]["at"]["80%"]["threshold"]
    assert at.slider(key="ask_threshold").value == round(suggested, 2)
    assert "the report's 80 % coverage" in shown(at)
    fill(at, "Which vitamin deficiency causes scurvy?", "Vitamin A", "Vitamin C", "Vitamin D", "Vitamin K")
    at.slider(key="ask_threshold").set_value(1.0)
    at.button(key="ask_submit").click().run()
    assert not at.exception and "#### The model abstains" in [m.value for m in at.markdown]
    at.slider(key="ask_threshold").set_value(0.0).run()
    assert "#### The model abstains" not in [m.value for m in at.markdown]
