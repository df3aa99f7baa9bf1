"""The first start says what the visitor is looking at (issue 39, item 3): which model answers and what it is
measured to do, from a report measured once and kept under the reports folder (or an adapter's own
eval_report.json); the operator's one button for the demo adapter; the label on explanations from a model measured
at the letter prior. AppTest on the tiny random Llama, as tests/test_app.py."""

from __future__ import annotations

import json
import re
import threading

import pytest

from app_ui.claim_view import PRIOR_NOTE
from mcqa_core.service import demo_run, measured_claim, train_launcher

from . import test_app
from .test_app import fill, open_app, shown

app_env = test_app.app_env
ROWS = 12
SCURVY = ("Which vitamin deficiency causes scurvy?", "Vitamin A", "Vitamin C", "Vitamin D", "Vitamin K")


def plain(text: str) -> str:
    """Markdown's escapes removed: the text as a reader sees it."""
    return re.sub(r"\\(.)", r"\1", text)


@pytest.fixture
def first_start(app_env, tmp_path, monkeypatch):
    """The first-start measurement on, over 12 held-out rows, into this test's own reports folder."""
    monkeypatch.setenv("MCQA_REPORTS_DIR", str(tmp_path / "reports"))
    monkeypatch.setenv("MCQA_APP_MEASURE_ROWS", str(ROWS))
    return app_env


def tiny_base():
    from mcqa_core.models.inference import load_model

    return load_model(base_model="tiny-random-llama", load_in_4bit=False)


def paired(p_value: float, a_only: int, b_only: int, n: int = ROWS) -> dict:
    return {"difference": (a_only - b_only) / n, "ci": [-0.3, 0.3], "p_value": p_value, "a_only": a_only,
            "b_only": b_only, "n": n, "test": "McNemar, exact", "ci_method": "test"}  # fmt: skip


def test_the_base_says_what_it_does_from_its_cached_report_and_labels_its_explanation(first_start, data_dir):
    loaded = tiny_base()
    path = measured_claim.base_report_path(loaded, ROWS)
    report = measured_claim.measure_base(loaded, path, ROWS, data_dir)
    assert path.exists() and report["n"] == ROWS and report["meta"]["split"] == "heldout"
    # Numbers no model of these 12 rows gives, so that the page can only have read them from the file.
    report |= {"accuracy": 0.4567, "accuracy_ci": [0.2345, 0.6789], "vs_always_a": paired(0.42, 2, 1)}
    report["pred_spread"] = {"A": 0.87, "B": 0.13, "C": 0.0, "D": 0.0}
    path.write_text(json.dumps(report))

    at = open_app("ask")
    sentence = (
        'tiny-random-llama (base, no adapter) answers "A" to 87% of held-out questions; accuracy 45.7% (95 % '
        'interval 23.4%-67.9%) on 12 held-out rows, not distinguishable from always-"A" (+8.3 points, exact '
        "McNemar p = 0.42)."
    )
    assert plain(shown(at)).count(sentence) == 1
    side = plain("\n".join(m.value for m in at.sidebar.markdown))
    assert '**Measured:** 45.7% (23%-68%) on 12 held-out rows; "A" to 87% of questions; at the letter prior' in side

    fill(at, *SCURVY)
    at.button(key="ask_submit").click().run()
    assert not at.exception
    assert [c.value for c in at.caption].count(f":material/warning: {PRIOR_NOTE}") == 1  # beside Explain
    assert "its explanation is not evidence; the retrieved expert explanations below are" in PRIOR_NOTE


def test_no_report_yet_says_it_is_being_measured_then_the_sentence(first_start, monkeypatch):
    gate, calls = threading.Event(), []
    measure = measured_claim.measure_base

    def held_back(*args, **kwargs):  # the page is drawn before the measurement can end
        calls.append(args)
        assert gate.wait(60)
        return measure(*args, **kwargs)

    monkeypatch.setattr(measured_claim, "measure_base", held_back)
    at = open_app("ask")
    text = plain(shown(at))
    assert "tiny-random-llama (base, no adapter) answers. It is being measured on the first 12 held-out rows" in text
    assert "being measured on 12 held-out rows" in text  # the sidebar's short form
    fill(at, *SCURVY)
    at.button(key="ask_submit").click().run()  # answering while it is measured: no crash, no prior label yet
    assert not at.exception and not any("letter prior" in c.value for c in at.caption)

    gate.set()
    path = measured_claim.base_report_path(tiny_base(), ROWS)
    measured_claim.wait_for_measurement(path, 120)
    report = json.loads(path.read_text())  # written once, where the next start reads it
    at.run()
    assert not at.exception
    lo, hi = report["accuracy_ci"]
    assert (
        f'tiny-random-llama (base, no adapter) answers "A" to {report["pred_spread"]["A"]:.0%} of held-out '
        f"questions; accuracy {report['accuracy']:.1%} (95 % interval {lo:.1%}-{hi:.1%}) on 12 held-out rows"
    ) in plain(shown(at))
    assert "being measured" not in plain(shown(open_app("ask")))  # a second session reads it from disk
    assert len(calls) == 1  # measured once, however many sessions and reruns


def test_an_adapter_says_what_its_own_report_measured_and_is_not_labelled_when_above_the_prior(
    first_start, tiny_adapter
):
    import shutil

    folder = shutil.copytree(tiny_adapter, first_start / tiny_adapter.name)
    report = json.loads((folder / "eval_report.json").read_text())
    report["vs_always_a"] = paired(0.001, 9, 1)
    (folder / "eval_report.json").write_text(json.dumps(report))
    at = open_app("ask")
    assert 'tiny-lora (adapter on tiny-random-llama) answers "A" to' in plain(shown(at))
    assert '+66.7 points above always-"A" (exact McNemar p = 0.001)' in plain(shown(at))
    fill(at, *SCURVY)
    at.button(key="ask_submit").click().run()
    assert not at.exception
    assert not any("letter prior" in c.value for c in at.caption)
    assert "ask_train_demo" not in [b.key for b in at.button]  # an adapter is ready: no demo button


def test_a_visitor_sees_no_demo_button(first_start, monkeypatch):
    monkeypatch.setenv("MCQA_OPERATOR_LOCAL", "0")
    monkeypatch.setenv("MCQA_OPERATOR_KEY", "first-start-key")
    at = open_app("ask")
    assert "ask_train_demo" not in [b.key for b in at.button]
    assert "cpu-demo: measured" not in shown(at)


def test_the_operator_trains_the_demo_adapter_with_one_button(first_start, monkeypatch):
    started = []

    def start(argv, adapters_dir):  # no real training in a test: what the Train page's Start would run
        started.append(argv)
        return {"pid": 1, "output_dir": argv[argv.index("--output-dir") + 1]}

    monkeypatch.setattr(train_launcher, "start", start)
    at = open_app("ask")
    assert [b.label for b in at.button if b.key == "ask_train_demo"] == ["Train the demo adapter"]
    line = plain(next(c.value for c in at.caption if "cpu-demo: measured" in c.value or "cpu-demo: no run" in c.value))
    assert "docs/" in line and "this machine has" in line
    at.button(key="ask_train_demo").click().run()
    assert not at.exception
    assert started == [["--preset", "cpu-demo", "--output-dir", str(first_start / "cpu-demo")]]
    assert at.session_state["train_watch"] == str(first_start / "cpu-demo")
    assert "Started cpu-demo into cpu-demo" in plain(shown(at))


@pytest.fixture(scope="module")
def tiny_adapter(tmp_path_factory, tiny_model_path, validation_rows):
    from mcqa_core.data.medmcqa import is_heldout

    from .app_helpers import make_tiny_adapter

    rows = [r for r in validation_rows if is_heldout(r["id"])][:ROWS]
    return make_tiny_adapter(tmp_path_factory.mktemp("adapters") / "tiny-lora", tiny_model_path, rows=rows)


# --------------------------------------------------------------------------- the pure parts


AMX_XEON = "vendor_id\t: GenuineIntel\nflags\t\t: fpu avx512f avx512_bf16 amx_bf16 amx_tile\n"
EPYC_BF16 = "vendor_id\t: AuthenticAMD\nflags\t\t: fpu avx512f avx512_bf16\n"
OLD_EPYC = "vendor_id\t: AuthenticAMD\nflags\t\t: fpu avx2\n"


@pytest.mark.parametrize(
    ("cpuinfo", "precision", "expected"),
    [
        (AMX_XEON, "bf16", "measured 8 min 42 s end to end on 2 cores of an Intel Xeon with AMX, in bf16 (docs/speed"),
        (AMX_XEON, "fp32", "measured 10 min 48 s end to end on 2 idle cores of an Intel Xeon with AVX512-BF16"),
        (EPYC_BF16, "bf16", "measured 12 min 10 s end to end on 2 cores of an AMD EPYC with AVX512-BF16, in bf16"),
        (EPYC_BF16, "fp32", "measured 14 min 48 s end to end on 2 cores of an AMD EPYC with AVX512-BF16, in fp32"),
        (OLD_EPYC, "fp32", "measured 17 min end to end on an AMD EPYC without AVX512-BF16 (docs/results.md)"),
        ("", "fp32", "no run was measured on this kind of CPU"),
    ],
)
def test_the_demo_time_is_the_one_measured_on_this_kind_of_cpu(cpuinfo, precision, expected):
    assert demo_run.demo_time_line(cpuinfo, precision).startswith(expected)


def test_the_sentence_says_same_as_always_a_only_when_the_paired_test_finds_no_difference_at_all():
    report = {"n": 200, "accuracy": 0.315, "accuracy_ci": [0.254, 0.382], "pred_spread": {"A": 1.0},
              "vs_always_a": paired(1.0, 0, 0, 200), "meta": {"split": "heldout"}}  # fmt: skip
    assert measured_claim.claim_sentence("m", report) == (
        'm answers "A" to 100% of held-out questions; accuracy 31.5% (95 % interval 25.4%-38.2%) on 200 held-out '
        'rows, the same as always-"A" (exact McNemar p = 1)'
    )
    assert measured_claim.at_prior(report) is True
    report["vs_always_a"] = paired(0.01, 20, 5, 200)
    assert measured_claim.claim_sentence("m", report).endswith('+7.5 points above always-"A" (exact McNemar p = 0.01)')
    assert measured_claim.at_prior(report) is False
