"""The Streamlit app through `streamlit.testing.v1.AppTest`: every page driven by its widget keys, with the
real tiny random Llama behind it (no mocked scorer), plus the pure logic of `mcqa_core.service`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from streamlit.proto.Metric_pb2 import Metric as MetricProto

from app_ui import caches
from app_ui.markdown_text import md_escape
from mcqa_core.data.prompt import LETTERS, OPTION_KEYS, format_prompt
from mcqa_core.models import run_record
from mcqa_core.service import adapters, questions
from mcqa_core.service import row_filters as service_rows

from .app_helpers import make_tiny_adapter

REPO = Path(__file__).resolve().parents[1]
TIMEOUT = 180  # the first run in a process imports torch/transformers and loads the model
PERCENT = re.compile(r"\b[A-D] \d+\.\d%")
VERDICT = r"\*\*correct\*\*\]|\*\*wrong\*\*\]: MedMCQA says \*\*[A-D]\*\*"


@pytest.fixture(autouse=True)
def app_env(monkeypatch, tmp_path, data_dir, tiny_model_path):
    """The app on the tiny model, full precision, with an empty adapters folder unless a test adds one."""
    adapters = tmp_path / "adapters"
    adapters.mkdir()
    monkeypatch.setenv("MCQA_APP_BASE_MODEL", "tiny-random-llama")
    monkeypatch.setenv("MCQA_APP_4BIT", "0")
    monkeypatch.setenv("MCQA_ADAPTERS_DIR", str(adapters))
    monkeypatch.setenv("MCQA_DATA_DIR", str(data_dir))
    return adapters


@pytest.fixture(scope="module")
def tiny_adapter(tmp_path_factory, tiny_model_path, validation_rows):
    """One adapter folder (random LoRA on the tiny model) with an eval_report.json of 12 held-out rows."""
    from mcqa_core.data.medmcqa import is_heldout

    rows = [r for r in validation_rows if is_heldout(r["id"])][:12]
    return make_tiny_adapter(tmp_path_factory.mktemp("adapters") / "tiny-lora", tiny_model_path, rows=rows)


def open_app(page: str = "ask", **state):
    """A fresh session on `page` (Ask is the default page), with widget values preset by key.

    AppTest (1.67) drops the sidebar from its element tree on reruns of an `st.navigation` app (the
    browser keeps showing it, see test_browser.py), so sidebar assertions read a session's first run.
    """
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=TIMEOUT)
    for key, value in state.items():
        at.session_state[key] = value
    at.run()
    if page != "ask":
        at.switch_page(f"pages/{page}.py")
        at.run()
    assert not at.exception, at.exception
    return at


def picker_entries(at) -> list[str]:
    """The sidebar picker's entries as a reader sees them: the name, then its measurement (shown as text)."""
    r = at.sidebar.radio(key="sidebar_model")
    plain = [re.sub(r"\\(.)", r"\1", t) for t in (*r.options, *r.proto.captions)]
    names, captions = plain[: len(r.options)], plain[len(r.options) :]
    return [f"{n} · {c}" if c else n for n, c in zip(names, captions)]


def fill(at, question: str, *options: str) -> None:
    at.text_area(key="ask_question").set_value(question)
    for key, text in zip(("ask_opa", "ask_opb", "ask_opc", "ask_opd"), options):
        at.text_input(key=key).set_value(text)


def shown(at) -> str:
    """Everything a user reads on the page (main area and sidebar)."""
    parts = []
    for kind in ("title", "markdown", "caption", "info", "warning", "error", "success", "metric", "code"):
        for el in getattr(at, kind):
            parts.append(str(el.value))
    return "\n".join(parts)


# --------------------------------------------------------------------------- Ask


def test_ask_answers_with_probabilities_time_and_prompt(data_dir):
    at = open_app("ask")
    assert "Answering with the base model alone" in shown(at)  # the offline default's notice
    assert "train_adapter.py --preset cpu-demo" in shown(at)
    question = "Which vitamin deficiency causes scurvy?"
    fill(at, question, "Vitamin A", "Vitamin C", "Vitamin D", "Vitamin K")
    at.button(key="ask_submit").click().run()
    assert not at.exception
    text = shown(at)
    headline = [m.value for m in at.markdown if m.value.startswith("#### ")]
    assert len(headline) == 1 and re.match(r"#### [A-D]\. Vitamin", headline[0])
    assert len(PERCENT.findall(text)) == 4  # the four probabilities, as text beside the bar chart
    assert re.search(r"answered in \*\*\d+\.\d\d s\*\*", text)
    row = {"question": question, "opa": "Vitamin A", "opb": "Vitamin C", "opc": "Vitamin D", "opd": "Vitamin K"}
    # the exact prompt, in its expander (st.code drops the final line break; the caption mentions it)
    assert format_prompt(row).rstrip("\n") in [c.value.rstrip("\n") for c in at.code]
    at.button(key="ask_explain").click().run()
    assert not at.exception
    letter = headline[0][5]
    assert f"Written by the model after its answer {letter}" in shown(at)
    chosen = row[OPTION_KEYS[LETTERS.index(letter)]]
    assert at.session_state["ask_explanation"].startswith(f"{letter}. {chosen} is correct because")
    at.run()  # a rerun shows the explanation kept, once
    assert [m.value for m in at.markdown].count(md_escape(at.session_state["ask_explanation"])) == 1


def test_an_explanation_streams_from_the_chosen_answer_and_a_contradiction_is_named(tiny_model_path):
    from mcqa_core.models.inference import load_model
    from mcqa_core.service.questions import other_letters, prepare_prompt, stream_explanation

    loaded = load_model(base_model=tiny_model_path, load_in_4bit=False)
    row = {"question": "Antidote for warfarin?", "opa": "Vitamin K", "opb": "Protamine", "opc": "Naloxone", "opd": "?"}
    pieces = list(stream_explanation(loaded, prepare_prompt(loaded.tokenizer, row).text, row, "A", max_new_tokens=24))
    assert pieces[0] == "A. Vitamin K is correct because" and len(pieces) > 2  # then the model's words, in turn
    letters = list("ABCD")
    assert other_letters("A. Vitamin K is correct because the answer is C. Naloxone", "A", letters) == ["C"]
    assert other_letters("The correct answer is C Flumazenil; option D is right", "A", letters) == ["C", "D"]
    assert other_letters("A. Vitamin K is correct because a vitamin answers it. Option B was wrong", "A", letters) == []
    assert other_letters("Answer: (E)", "A", letters) == []  # not a letter of this question


def test_an_explanation_never_says_the_same_run_of_tokens_twice(tiny_model_path):
    """A model that says its last word again (its layers silenced, its output layer its input embedding) loops
    under greedy decoding; the repetition guard the Ask page's explanation uses stops it."""
    import torch

    from mcqa_core.models.inference import generate_text, load_model
    from mcqa_core.service.questions import EXPLANATION_NO_REPEAT

    loaded = load_model(base_model=tiny_model_path, load_in_4bit=False)
    model, n = loaded.model, EXPLANATION_NO_REPEAT
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        model.lm_head.weight.copy_(model.model.embed_tokens.weight)

    def grams(text):
        ids = loaded.tokenizer(text, add_special_tokens=False)["input_ids"]
        runs = [tuple(ids[i : i + n]) for i in range(len(ids) - n + 1)]
        return len(runs) - len(set(runs))

    prompt = "The heart pumps blood. The heart pumps blood. The heart"
    assert grams(generate_text(loaded.model, loaded.tokenizer, prompt, 64)) > 0  # unguarded, it repeats itself
    guarded = generate_text(loaded.model, loaded.tokenizer, prompt, 64, no_repeat_ngram_size=n)
    assert guarded and grams(guarded) == 0


def test_ask_through_a_server_then_one_line_when_it_dies_and_a_fallback_when_it_is_gone(monkeypatch):
    from mcqa_core.evaluation.letter_scoring import letter_token_ids
    from mcqa_core.models.loading import load_tokenizer
    from mcqa_core.models.offline import ensure_tiny_llama

    from .test_serving import _FakeServer

    # answers "B" most likely, then "A", for model "mcqa"; C and D only through the letter ids the app's tokenizer has
    ids = letter_token_ids(load_tokenizer(str(ensure_tiny_llama())), "course", 4)
    server = _FakeServer("ok", letter_ids=dict(zip("ABCD", ids)))
    monkeypatch.setenv("MCQA_APP_BACKEND", "openai")
    monkeypatch.setenv("MCQA_APP_ENDPOINT", server.endpoint)
    monkeypatch.setenv("MCQA_APP_SERVED_BASE_MODEL", "mcqa")
    caches._cached_model.clear()
    try:
        at = open_app("ask")
        assert "**Answered by:** server http" in shown(at)
        fill(at, "Which organ pumps blood?", "Lung", "Heart", "Liver", "Skin")
        at.button(key="ask_submit").click().run()
        assert [m.value for m in at.markdown if m.value.startswith("#### ")] == ["#### B. Heart"]
        server.shutdown()
        server.server_close()
        at.button(key="ask_submit").click().run()  # the server died: one line, the page keeps working
        assert not at.exception and len(at.error) == 1 and "cannot reach the server" in at.error[0].value
        caches._cached_model.clear()  # a new start: the server is refused, this app's own model answers
        at = open_app("ask")
        text = shown(at)
        assert "cannot reach the server" in text and "Still using base model tiny\\-random\\-llama." in text
    finally:
        caches._cached_model.clear()


def test_ask_refuses_bad_input_without_calling_the_model(monkeypatch):
    at = open_app("ask")

    def no_model(*a, **k):
        raise AssertionError("the model must not be called for invalid input")

    monkeypatch.setattr(questions, "answer_rows", no_model)
    at.button(key="ask_submit").click().run()
    assert not at.exception
    assert "Type a question first." in [e.value for e in at.error]
    fill(at, "What is the antidote of paracetamol poisoning?", "N-acetylcysteine")
    at.button(key="ask_submit").click().run()
    assert not at.exception
    assert "Fill at least two options (filled: A)." in [e.value for e in at.error]
    assert not [m for m in at.markdown if m.value.startswith("#### ")]


def test_ask_warns_about_duplicates_and_empty_options_and_shows_markup_as_text():
    at = open_app("ask")
    fill(
        at,
        "<script>alert(1)</script> Which **drug** is [this](javascript:x)?",
        "<b>Atropine</b>",
        "<b>atropine</b> ",
        "",
        ":red[Adrenaline]",
    )
    at.button(key="ask_submit").click().run()
    assert not at.exception
    warnings = [w.value for w in at.warning]
    assert any("Options A and B are the same text" in w for w in warnings)
    assert any("Option C left empty" in w for w in warnings)
    headline = next(m for m in at.markdown if m.value.startswith("#### "))
    assert not headline.value.startswith("#### C.")  # the empty option is never the answer
    assert re.search(r"\bC 0\.0%", shown(at))
    for m in at.markdown:  # user text is escaped, and raw HTML is never allowed
        assert "<b>" not in m.value and "**drug**" not in m.value and ":red[" not in m.value
        assert not m.proto.allow_html


def test_ask_says_how_a_long_question_was_shortened():
    at = open_app("ask")
    fill(at, "A patient presents with fever. " * 400 + "What is the diagnosis?", "Malaria", "Typhoid", "Dengue", "Flu")
    at.button(key="ask_submit").click().run()
    assert not at.exception
    assert any("question was too long" in w.value and "cut at the end" in w.value for w in at.warning)
    assert "(question shortened)" in shown(at)
    result = at.session_state["ask_result"]  # the prompt shown is the one scored, cut the same way
    assert result.answers["adapter"].shortened and result.prompt.n_tokens == result.answers["adapter"].n_tokens


def test_ask_random_sample_is_graded_against_medmcqa():
    at = open_app("ask")
    at.button(key="ask_random").click().run()
    assert at.text_area(key="ask_question").value  # filled from a validation row
    at.button(key="ask_submit").click().run()
    assert not at.exception
    assert re.search(VERDICT, shown(at))


def test_ask_keeps_its_inputs_across_pages():
    at = open_app()
    fill(at, "Which nerve supplies the diaphragm?", "Phrenic", "Vagus")
    at.switch_page("pages/browse.py").run()
    at.switch_page("pages/ask.py").run()
    assert not at.exception
    assert at.text_area(key="ask_question").value == "Which nerve supplies the diaphragm?"
    assert at.text_input(key="ask_opb").value == "Vagus"


def test_ask_drops_an_answer_kept_in_the_old_form_by_a_session_from_before():
    at = open_app("ask", ask_result={"inputs": {}, "answers": {}, "explanation": None}, ask_explanation="old")
    assert not at.exception
    assert "ask_result" not in at.session_state and "ask_explanation" not in at.session_state


def test_ask_compares_base_and_fine_tuned_from_one_model(app_env, tiny_adapter):
    import shutil

    shutil.copytree(tiny_adapter, app_env / tiny_adapter.name)
    at = open_app("ask")
    side = "\n".join(m.value for m in at.sidebar.markdown)
    print([e.value for e in at.sidebar.error], [e.value for e in at.sidebar.caption], [e for e in at.sidebar])
    assert "tiny\\-lora" in side and "31.2%" in side and "demo\\-train \\(32 usable rows\\)" in side
    assert re.search(r"\*\*Measured accuracy:\*\* 31\.2% \(95 % interval \d+\.\d% to \d+\.\d%\)", side)
    fill(at, "Which nerve supplies the diaphragm?", "Phrenic", "Vagus", "Accessory", "Hypoglossal")
    at.toggle(key="ask_compare").set_value(True)
    at.button(key="ask_submit").click().run()
    assert not at.exception
    text = shown(at)
    assert "Base model (adapter off)" in text and "Fine-tuned (adapter on)" in text
    lines = [c.value for c in at.caption if c.value.startswith("P(answer)")]
    assert len(lines) == 2 and lines[0] != lines[1]  # the random LoRA changes the probabilities


def test_a_first_visit_shows_the_best_measured_real_adapter_never_a_smoke_run_or_another_base(app_env, tiny_adapter):
    """The newest folders here are a smoke run and an adapter on another base: a first visit shows the best-measured
    adapter on the app's base, the picker lists the others after it and names what they are."""
    import json
    import os
    import shutil

    made: list[Path] = []

    def copy(name: str, **changes) -> Path:  # each one newer than the last (copytree keeps the source's mtime)
        folder = shutil.copytree(tiny_adapter, app_env / name)
        record = json.loads((folder / "mcqa_run.json").read_text())
        (folder / "mcqa_run.json").write_text(json.dumps({**record, **changes}))
        os.utime(folder, (os.path.getmtime(tiny_adapter) + 60 * len(made),) * 2)
        made.append(folder)
        return folder

    copy("measured-on-16", metrics={"final_accuracy": 0.5})  # higher, but on 16 rows: 28 % at the interval's low end
    copy("measured-on-1074", metrics={"report_accuracy": 0.304, "report_rows": 1074})
    best = copy("measured-better", metrics={"report_accuracy": 0.35, "report_rows": 1074})
    copy("smoke", preset="smoke")  # the newest two
    copy("on-another-base", base_model="smollm2-135m")
    at = open_app("ask")
    assert at.sidebar.radio(key="sidebar_model").value == str(best)
    labels = picker_entries(at)
    assert re.fullmatch(r"measured-better · 35\.0% \(95 % CI \d+%-\d+%\) · 1,074 heldout rows", labels[0])
    assert [x.split(" ")[0] for x in labels[-4:-2]] == ["on-another-base", "smoke"]  # then the base, another folder
    assert labels[-4].startswith("on-another-base (on smollm2-135m) · ")
    assert labels[-3].startswith("smoke (smoke run on tiny-random-llama: a machinery check) · ")
    for name in ("measured-better", "measured-on-16", "measured-on-1074"):
        shutil.rmtree(app_env / name)
    assert open_app("ask").sidebar.radio(key="sidebar_model").value == "__base__"


def test_a_broken_adapter_is_reported_and_the_previous_model_stays(tmp_path, app_env, tiny_adapter):
    import shutil

    broken = tmp_path / "not-an-adapter"
    broken.mkdir()
    at = open_app(sidebar_model="__path__", sidebar_adapter_path=str(broken))
    assert any("Could not load adapter" in e.value for e in at.sidebar.error)
    reason = "\n".join(c.value for c in at.sidebar.code)
    assert str(broken) in reason and "lacks adapter_config.json" in reason
    assert any("Still using base model tiny\\-random\\-llama" in w.value for w in at.sidebar.warning)

    # A folder that passes the checks but holds damaged weights fails inside peft/safetensors: reported too.
    damaged = shutil.copytree(tiny_adapter, tmp_path / "damaged")
    (damaged / "adapter_model.safetensors").write_bytes(b"not safetensors")
    at = open_app(sidebar_model="__path__", sidebar_adapter_path=str(damaged))
    assert any("Could not load adapter" in e.value for e in at.sidebar.error)
    assert str(damaged) in "\n".join(c.value for c in at.sidebar.code)

    # With an adapter loaded before (this session's last good model), a failing folder leaves it answering.
    good = shutil.copytree(tiny_adapter, app_env / tiny_adapter.name)
    previous = adapters.adapter_spec(good, adapters.AppSettings.from_env())
    at = open_app(sidebar_model="__path__", sidebar_adapter_path=str(broken), app_good_spec=previous)
    assert any("Still using adapter" in w.value and "tiny\\-lora" in w.value for w in at.sidebar.warning)
    assert "**Adapter:** tiny\\-lora" in "\n".join(m.value for m in at.sidebar.markdown)
    fill(at, "Which vitamin deficiency causes scurvy?", "Vitamin A", "Vitamin C")
    at.button(key="ask_submit").click().run()
    assert not at.exception
    assert at.session_state["app_spec"] == previous
    assert "Fine-tuned model" in shown(at) and [m for m in at.markdown if m.value.startswith("#### ")]


# --------------------------------------------------------------------------- Browse


def test_browse_filters_searches_asks_and_opens_in_ask(validation_rows):
    at = open_app("browse")
    assert "4,183 of 4,183 questions match" in shown(at) and "Page 1 of 210" in shown(at)
    at.number_input(key="browse_page").set_value(3).run()
    assert "Page 3 of 210" in shown(at)
    at.selectbox(key="browse_subject").set_value("Anatomy").run()
    assert "Page 1 of" in shown(at)  # new filters start at the first page
    at.text_input(key="browse_search").set_value("NERVE").run()
    assert not at.exception
    m = re.search(r"([\d,]+) of 4,183 questions match", shown(at))
    assert m and 0 < int(m.group(1).replace(",", "")) < 4183
    assert "correct answer" in shown(at)  # the detail view marks MedMCQA's answer
    at.button(key="browse_ask_list").click().run()
    assert not at.exception
    assert re.search(VERDICT, shown(at))
    assert len(PERCENT.findall(shown(at))) == 4
    picked = at.selectbox(key="browse_row").value
    at.button(key="browse_open_in_ask_list").click().run()
    assert not at.exception
    assert "Ask the model" in shown(at)  # now on the Ask page, with the sample carried over
    row = service_rows.find_row(validation_rows, picked)
    assert row["subject_name"] == "Anatomy"
    assert at.text_area(key="ask_question").value == row["question"]
    assert at.text_input(key="ask_opd").value == row["opd"]


ORGANS = {
    "name": "organs.csv",
    "rows": [
        {
            "id": "b1",
            "question": "Which organ exchanges gas?",
            **dict(zip(("opa", "opb", "opc", "opd", "ope"), ("Liver", "Spleen", "Kidney", "Heart", "Lung"))),
            "cop": 4,
            "exp": "Alveoli are in the lung.",
        }
    ],
    "describe": {},
}


def test_a_bank_question_in_ask_and_browse_names_the_bank_its_letters_and_leaves_with_a_new_question(app_env):
    at = open_app("ask", app_bank=ORGANS)
    at.button(key="ask_random_bank").click().run()
    assert at.text_input(key="ask_ope").value == "Lung"
    at.button(key="ask_submit").click().run()
    assert not at.exception
    assert "the letters A–E held" in shown(at) and "probabilities for the letters A–E after this text" in shown(at)
    assert md_escape("organs.csv") + "'s own explanation" in [e.label for e in at.expander]
    assert "MedMCQA says" not in shown(at)
    at.text_area(key="ask_question").set_value("Which vitamin prevents scurvy?").run()
    assert at.text_input(key="ask_ope").value == "" and at.text_input(key="ask_opa").value == "Liver"

    browse = open_app("browse", app_bank=ORGANS, browse_source="Your questions (organs.csv)")
    assert f"Explanation ({md_escape('organs.csv')})" in [e.label for e in browse.expander]
    assert "Explanation (MedMCQA)" in [e.label for e in open_app("browse").expander]


def test_browse_without_data_says_how_to_point_at_it(monkeypatch, tmp_path):
    monkeypatch.setenv("MCQA_DATA_DIR", str(tmp_path))
    at = open_app("browse")
    info = "\n".join(i.value for i in at.info)
    assert "Point the app at a folder holding `validation.jsonl`" in info and "MCQA_DATA_DIR=" in info
    assert not at.dataframe


# --------------------------------------------------------------------------- Evaluate


def test_evaluate_runs_here_with_progress_and_opens_a_wrong_answer_in_browse():
    at = open_app("evaluate")
    assert "no saved report" in shown(at)
    at.number_input(key="evaluate_n").set_value(16)
    at.button(key="evaluate_run").click().run()
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert re.fullmatch(r"\d+\.\d%", metrics["Base model"]) and re.fullmatch(r"\d+\.\d%", metrics['Always answer "A"'])
    assert "Adapter" not in metrics and not at.toggle  # the base alone: no switch that cannot be used
    assert "no adapter to compare it with" in shown(at)
    text = shown(at)
    assert "Run here on the first 16 heldout questions." in text and 'always-"A"' in text
    # each accuracy with its interval as text beneath it, always-"A"'s too (no base model here)
    intervals = [c.value for c in at.caption if c.value.startswith("95 % interval")]
    assert len(intervals) == 2 and re.fullmatch(r"95 % interval \d+\.\d% to \d+\.\d%, 16 questions", intervals[0])
    if at.selectbox(key="evaluate_wrong") is not None and at.button(key="evaluate_open_browse") is not None:
        wrong_id = at.selectbox(key="evaluate_wrong").value
        at.button(key="evaluate_open_browse").click().run()
        assert not at.exception
        assert f"id {md_escape(wrong_id)}" in shown(at)
        assert "correct answer" in shown(at)


def test_evaluate_shows_base_and_adapter_side_by_side_without_clicking_run(app_env, tiny_adapter):
    import shutil

    shutil.copytree(tiny_adapter, app_env / tiny_adapter.name)
    at = open_app("evaluate")
    text = shown(at)
    assert "Report written at training end" in text and "eval_report.json" in text
    labels = [m.label for m in at.metric]
    assert labels[:3] == ["Base model", "Adapter", 'Always answer "A"']  # the base first, the adapter beside it
    report = json.loads((tiny_adapter / "eval_report.json").read_text())
    adapter = at.metric[1]
    assert adapter.value == f"{report['accuracy']:.1%}" and at.metric[0].value == f"{report['base']['accuracy']:.1%}"
    # the delta sits under the adapter's number, in colour only when the paired test says it is real
    assert adapter.proto.delta.endswith("pts vs base")
    significant = report["vs_base"]["p_value"] < 0.05
    assert (adapter.proto.color == MetricProto.MetricColor.GRAY) != significant
    assert re.search(r"Against the base model: .*p [=<] ", text)
    # the answers that changed, as fixed and broken, whose counts are the test's discordant pairs
    tabs = [t.label for t in at.tabs]
    assert tabs[:2] == [f"Fixed ({report['vs_base']['a_only']})", f"Broken ({report['vs_base']['b_only']})"]
    spreads = [list(df.value.index) for df in at.dataframe if "base answers" in list(df.value.index)]
    assert spreads == [["adapter answers", "base answers", "correct answers"]]  # the letter spreads side by side
    at.number_input(key="evaluate_n").set_value(8)
    at.button(key="evaluate_run").click().run()  # compare with base is on by default with an adapter
    assert not at.exception
    text = shown(at)
    intervals = [c.value for c in at.caption if c.value.startswith("95 % interval")]
    assert len(intervals) == 3
    assert all(re.fullmatch(r"95 % interval \d+\.\d% to \d+\.\d%, 8 questions", c) for c in intervals[:2])
    assert re.search(r"Against always-\"A\": .*p [=<] ", text) and re.search(r"Against the base model: .*p [=<] ", text)
    csv_button = at.get("download_button")
    assert csv_button, "a run here offers its results"


def test_pages_holds_exactly_the_four_pages_the_router_lists():
    from app_ui import navigation

    listed = sorted([navigation.ASK, navigation.BROWSE, navigation.EVALUATE, navigation.TRAIN])
    assert sorted(str(p.relative_to(REPO)) for p in (REPO / "pages").glob("*.py")) == listed
    for path in listed:  # each page draws inside the router's frame, even where Streamlit runs it on its own
        assert "\nthrough_router()" in (REPO / path).read_text()


def test_every_page_says_what_the_demo_is_for(app_env, tiny_adapter):
    import shutil

    from mcqa_core.models.run_record import DISCLAIMER

    shutil.copytree(tiny_adapter, app_env / tiny_adapter.name)
    for page in ("ask", "browse", "evaluate"):
        at = open_app(page)
        line = next(c.value for c in at.caption if DISCLAIMER in c.value)
        assert "This adapter: 31.2% letter accuracy (95 % interval" in line and "16 questions" in line


# --------------------------------------------------------------------------- one load per process


def test_the_model_loads_once_per_process_across_sessions_and_clicks(monkeypatch):
    import streamlit as st

    from mcqa_core.models import inference

    st.cache_resource.clear()
    real, calls = inference.load_model, []

    def counting_load_model(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(inference, "load_model", counting_load_model)
    for session in range(3):  # three browser sessions, each clicking around
        at = open_app("ask")
        fill(at, f"Question {session}: which vitamin prevents scurvy?", "A vitamin", "C vitamin")
        for _ in range(2):
            at.button(key="ask_submit").click().run()
        at.switch_page("pages/browse.py").run()
        at.switch_page("pages/evaluate.py").run()
        assert not at.exception
    assert len(calls) == 1


# --------------------------------------------------------------------------- mcqa_core.service logic


def test_check_input_rules():
    ok = questions.check_input("  Q? ", ["a", "b", " ", "d"])
    assert ok.ok and ok.allowed == ["A", "B", "D"] and ok.row["opc"] == questions.UNFILLED_OPTION
    assert ok.row["question"] == "Q?"
    assert questions.check_input("", ["a", "b"]).errors == ["Type a question first."]
    assert questions.check_input("Q", ["a"]).errors == ["Fill at least two options (filled: A)."]
    dup = questions.check_input("Q", ["Same  text", "same text", "c", "d"])
    assert dup.ok and "Options A and B are the same text" in dup.warnings[0]


def test_restrict_probs_and_filters(validation_rows):
    assert questions.restrict_probs([0.1, 0.2, 0.3, 0.4], ["A", "B"]) == pytest.approx([1 / 3, 2 / 3, 0, 0])
    anatomy = service_rows.filter_rows(validation_rows, subject="Anatomy")
    assert anatomy and all(r["subject_name"] == "Anatomy" for r in anatomy)
    hits = service_rows.filter_rows(validation_rows, search="VITAMIN deficiency")
    assert hits and all(
        "vitamin" in service_rows._haystack(r) and "deficiency" in service_rows._haystack(r) for r in hits
    )
    assert service_rows.page_rows(list(range(45)), 3, 20) == list(range(40, 45))
    assert service_rows.page_rows(list(range(45)), 9, 20) == list(range(40, 45))  # clamped to the last page
    assert md_escape("<b>**x**</b> :red[y] $z$") == r"\<b\>\*\*x\*\*\</b\> \:red\[y\] \$z\$"


def test_trained_rows_and_split_overlap_are_flagged(validation_rows):
    from mcqa_core.data.medmcqa import is_heldout

    run = {"data": {"train_split": "demo-train"}}
    held = next(r["id"] for r in validation_rows if is_heldout(r["id"]))
    trained = next(r["id"] for r in validation_rows if not is_heldout(r["id"]))
    assert run_record.trained_on_row(run, trained) and not run_record.trained_on_row(run, held)
    assert not run_record.trained_on_row({}, trained)
    assert "inflated" in run_record.split_overlap_warning(run, "validation")
    assert run_record.split_overlap_warning(run, "heldout") is None


def test_find_adapters_lists_ready_and_unfinished(tmp_path, tiny_adapter):
    import shutil

    shutil.copytree(tiny_adapter, tmp_path / "done")
    (tmp_path / "training" / "checkpoints").mkdir(parents=True)
    found = {a.name: a for a in adapters.find_adapters(tmp_path)}
    assert found["done"].ready and found["done"].accuracy == pytest.approx(0.3125)
    assert not found["training"].ready and "still training" in found["training"].problem
