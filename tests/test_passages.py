"""Items with a passage (PubMedQA's abstract, a vignette): the named format, the context column, and the passage in
every prompt the model reads."""

from __future__ import annotations

import json

from mcqa_core.cli.eval_command import main as mcqa_eval
from mcqa_core.data.banks.bank_columns import NAMED_FORMATS, guess_mapping
from mcqa_core.data.banks.bank_rows import load_bank
from mcqa_core.data.prompt import PROMPT_TEMPLATE, format_prompt

ABSTRACTS = [
    (["Statins lowered LDL in 40 patients.", "No adverse events were seen."], "yes"),
    (["Aspirin did not change mortality."], "no"),
    (["The trial was too small to tell."], "maybe"),
    (["Exercise improved sleep scores.", "Effects faded after a month."], "maybe"),
]


def pubmedqa_file(tmp_path):
    """Rows as qiaojin/PubMedQA's pqa_labeled set holds them."""
    records = [
        {
            "pubid": 1000 + n,
            "question": f"Does treatment {n} work?",
            "context": {"contexts": paras, "labels": ["RESULTS"] * len(paras), "meshes": ["Humans"]},
            "long_answer": f"Because of finding {n}.",
            "final_decision": answer,
        }
        for n, (paras, answer) in enumerate(ABSTRACTS)
    ]
    path = tmp_path / "pubmedqa.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_pubmedqa_rows_carry_their_abstract_and_three_fixed_options(tmp_path):
    path = pubmedqa_file(tmp_path)
    named = load_bank(str(path), NAMED_FORMATS["pubmedqa"].mapping)
    guessed = load_bank(str(path))  # PubMedQA's own columns are recognised
    assert named.rows == guessed.rows and named.skipped == 0 and named.has_answers
    first = named.rows[0]
    assert (first["opa"], first["opb"], first["opc"], "opd" in first) == ("yes", "no", "maybe", False)
    assert [r["cop"] for r in named.rows] == [0, 1, 2, 2]
    assert first["context"] == "Statins lowered LDL in 40 patients.\nNo adverse events were seen."
    assert first["id"] == "1000" and first["exp"] == "Because of finding 0."
    assert NAMED_FORMATS["pubmedqa"].hub == "qiaojin/PubMedQA" and NAMED_FORMATS["pubmedqa"].configs == ["pqa_labeled"]


def test_the_passage_reaches_every_prompt_and_rows_without_one_are_unchanged(tmp_path):
    row = load_bank(str(pubmedqa_file(tmp_path))).rows[0]
    course = format_prompt(row)
    assert course.startswith(
        "Choose the correct option for the following question.\n\n### Context:\nStatins lowered LDL in 40 patients.\n"
    )
    assert "### Question:\nDoes treatment 0 work?" in course and "A. yes. B. no. C. maybe." in course
    assert format_prompt(row, "lm-eval").startswith("Abstract: Statins lowered LDL")  # lm-eval's pubmedqa task
    assert format_prompt(row, "lm-eval", "cloze") == (
        "Abstract: Statins lowered LDL in 40 patients.\nNo adverse events were seen.\n"
        "Question: Does treatment 0 work?\nAnswer:"
    )
    plain = {k: v for k, v in row.items() if k != "context"} | {"opd": "unknown"}
    assert format_prompt(plain) == PROMPT_TEMPLATE.format(**plain)


def test_a_bank_with_a_passage_column_round_trips(tmp_path):
    """Rows written back in this product's own shape (a context column) load again unchanged."""
    rows = load_bank(str(pubmedqa_file(tmp_path))).rows
    again = tmp_path / "ours.jsonl"
    again.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert guess_mapping(list(rows[0])).context == "context"
    assert load_bank(str(again)).rows == rows


def test_mcqa_eval_scores_a_pubmedqa_file_by_letter_and_by_cloze(tmp_path):
    path = pubmedqa_file(tmp_path)
    argv = ["--base-model", "tiny-random-llama", "--no-4bit", "--bank", str(path)]
    for scoring in ("letter", "cloze"):
        out = tmp_path / f"{scoring}.json"
        assert mcqa_eval([*argv, "--scoring", scoring, "--output", str(out)]) == 0
        report = json.loads(out.read_text())
        assert report["n"] == 4 and all(len(p["probs"]) == 3 for p in report["predictions"])
        assert report["confusion"]["labels"] == ["A", "B", "C"]


def test_ask_shows_a_passage_to_the_model_before_the_question(monkeypatch, tmp_path, data_dir):
    from .test_app import fill, open_app

    monkeypatch.setenv("MCQA_ADAPTERS_DIR", str(tmp_path))
    monkeypatch.setenv("MCQA_APP_BASE_MODEL", "tiny-random-llama")
    monkeypatch.setenv("MCQA_APP_4BIT", "0")
    monkeypatch.setenv("MCQA_DATA_DIR", str(data_dir))
    at = open_app("ask")
    fill(at, "Does it work?", "yes", "no", "maybe", "unclear")
    at.text_area(key="ask_context").set_value("Statins lowered LDL in 40 patients.")
    at.button(key="ask_submit").click().run()
    assert not at.exception
    prompt = at.session_state["ask_result"].prompt.text
    assert "### Context:\nStatins lowered LDL in 40 patients.\n\n### Question:\nDoes it work?" in prompt
