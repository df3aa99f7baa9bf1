"""Question banks: every file shape and named format gives the same rows, detection decides or refuses, and every
bad input is one DataError line. All files are written here into tmp_path; nothing reaches the network."""

from __future__ import annotations

import csv
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mcqa_core.data.banks import bank_files
from mcqa_core.data.banks import bank_rows as banks
from mcqa_core.data.banks.bank_columns import NAMED_FORMATS, ColumnMap, guess_mapping
from mcqa_core.data.banks.bank_files import read_table
from mcqa_core.data.banks.bank_rows import Bank, load_bank, select_part
from mcqa_core.data.medmcqa import InvalidRowsWarning, is_heldout, validate_row
from mcqa_core.data.prompt import LETTERS, OPTION_KEYS, PROMPT_TEMPLATE, format_prompt, option_count, row_options
from mcqa_core.errors import DataError

# Four questions whose answers include the first and the last option, so index0 and index1 can both be detected.
QUESTIONS = [
    ("q1", "Deficiency of which vitamin causes scurvy?", ["Vitamin A", "Vitamin C", "Vitamin D", "Vitamin K"], 1),
    ("q2", "The drug of choice for anaphylaxis is", ["Adrenaline", "Atropine", "Digoxin", "Insulin"], 0),
    ("q3", "Which nerve supplies the deltoid?", ["Radial", "Ulnar", "Median", "Axillary"], 3),
    ("q4", "Normal adult fasting glucose (mg/dL) is", ["40-60", "120-160", "70-100", "200-250"], 2),
]
EXPECTED = [{"id": i, "question": q, **dict(zip(OPTION_KEYS, opts)), "cop": cop} for i, q, opts, cop in QUESTIONS]


def answer_as(form: str, opts: list[str], cop: int):
    return {"letter": LETTERS[cop], "text": opts[cop], "index0": cop, "index1": cop + 1}[form]


def write_csv(path, header, records, sep=","):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, delimiter=sep)
        w.writerow(header)
        w.writerows([[r.get(c, "") for c in header] for r in records])
    return path


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def write_parquet(path, records):
    pq.write_table(pa.Table.from_pylist(records), path)
    return path


def essentials(bank: Bank) -> list[tuple]:
    return [(r["question"], row_options(r), r["cop"]) for r in bank.rows]


def load_quietly(*args, **kwargs) -> Bank:
    with pytest.warns(InvalidRowsWarning):
        return load_bank(*args, **kwargs)


# --- the named formats, written the way their hub datasets look -----------------------------------------------


def medmcqa_file(tmp_path):
    return write_jsonl(
        tmp_path / "medmcqa.jsonl",
        [
            {
                "id": i,
                "question": q,
                **dict(zip(OPTION_KEYS, o)),
                "cop": c,
                "choice_type": "single",
                "exp": f"why {i}",
                "subject_name": "Medicine",
                "topic_name": None,
            }
            for i, q, o, c in QUESTIONS
        ],
    )


def medqa_file(tmp_path):
    records = [
        {
            "question": q,
            "answer": o[c],
            "options": dict(zip("ABCD", o)),
            "meta_info": "step1",
            "answer_idx": LETTERS[c],
            "metamap_phrases": ["x"],
        }
        for _, q, o, c in QUESTIONS
    ]
    records[0]["options"] = dict(reversed(list(records[0]["options"].items())))  # D..A: sorted back by key
    return write_jsonl(tmp_path / "medqa.jsonl", records)


def mmlu_file(tmp_path):
    return write_parquet(
        tmp_path / "mmlu.parquet",
        [{"question": q, "subject": "anatomy", "choices": o, "answer": c} for _, q, o, c in QUESTIONS],
    )


def headqa_file(tmp_path):
    return write_jsonl(
        tmp_path / "headqa.jsonl",
        [  # qid restarts per exam: the two exams share qids 1 and 2
            {
                "name": f"Cuaderno_{n // 2}",
                "year": "2013",
                "category": "medicine",
                "qid": n % 2 + 1,
                "qtext": q,
                "ra": c + 1,
                "image": "",
                "answers": [{"aid": k + 1, "atext": t} for k, t in reversed(list(enumerate(o)))],
            }
            for n, (_, q, o, c) in enumerate(QUESTIONS)
        ],
    )


@pytest.mark.parametrize(
    "name,writer",
    [("medmcqa", medmcqa_file), ("medqa", medqa_file), ("mmlu-medical", mmlu_file), ("headqa", headqa_file)],
)
def test_each_named_format_reads_a_local_file_in_its_shape(tmp_path, name, writer):
    bank = load_bank(str(writer(tmp_path)), NAMED_FORMATS[name].mapping)
    assert essentials(bank) == [(q, o, c) for _, q, o, c in QUESTIONS]
    assert bank.skipped == 0 and bank.has_answers
    assert bank.mapping["answer_as"] == NAMED_FORMATS[name].mapping.answer_as
    assert all(validate_row(r, options=None) is None for r in bank.rows)
    subject = {"medmcqa": "Medicine", "mmlu-medical": "anatomy", "headqa": "medicine"}.get(name)
    assert [r.get("subject_name") for r in bank.rows] == [subject] * 4
    if name == "medmcqa":
        assert [r["id"] for r in bank.rows] == ["q1", "q2", "q3", "q4"] and bank.rows[0]["exp"] == "why q1"
    else:
        assert [r["id"] for r in bank.rows] == ["row-1", "row-2", "row-3", "row-4"]


def test_named_formats_are_the_usual_benchmarks():
    assert (NAMED_FORMATS["medmcqa"].hub, NAMED_FORMATS["medmcqa"].split) == ("openlifescienceai/medmcqa", "validation")
    assert NAMED_FORMATS["medqa"].hub == "GBaker/MedQA-USMLE-4-options" and NAMED_FORMATS["medqa"].split == "test"
    assert NAMED_FORMATS["mmlu-medical"].configs == [
        "anatomy",
        "clinical_knowledge",
        "college_biology",
        "college_medicine",
        "medical_genetics",
        "professional_medicine",
    ]
    assert (NAMED_FORMATS["headqa"].hub, NAMED_FORMATS["headqa"].configs) == ("head_qa", ["en"])


# --- every mapping style gives the same rows ------------------------------------------------------------------


def style_file(tmp_path, style):
    if style in ("csv-letter", "csv-text", "csv-index0", "csv-index1"):
        form = style.split("-")[1]
        rows = [
            {"id": i, "Question": q, **dict(zip("ABCD", o)), "Answer": answer_as(form, o, c)}
            for i, q, o, c in QUESTIONS
        ]
        return write_csv(tmp_path / "bank.csv", ["id", "Question", "A", "B", "C", "D", "Answer"], rows)
    if style == "tsv-opa":
        rows = [{"id": i, "question": q, **dict(zip(OPTION_KEYS, o)), "cop": c} for i, q, o, c in QUESTIONS]
        return write_csv(tmp_path / "bank.tsv", ["id", "question", *OPTION_KEYS[:4], "cop"], rows, sep="\t")
    if style == "jsonl-list":
        return write_jsonl(
            tmp_path / "bank.jsonl",
            [{"id": i, "question": q, "choices": o, "answer": c + 1} for i, q, o, c in QUESTIONS],
        )
    if style == "jsonl-dict":
        return write_jsonl(
            tmp_path / "bank.jsonl",
            [
                {"id": i, "question": q, "options": dict(zip("ABCD", o)), "answer": f" {o[c].upper()} "}
                for i, q, o, c in QUESTIONS
            ],
        )
    if style == "parquet-cols":
        return write_parquet(
            tmp_path / "bank.parquet",
            [
                {"id": i, "question": q, **{f"option_{k}": t for k, t in zip("abcd", o)}, "label": f"({LETTERS[c]})"}
                for i, q, o, c in QUESTIONS
            ],
        )
    raise AssertionError(style)


@pytest.mark.parametrize(
    "style,form",
    [
        ("csv-letter", "letter"),
        ("csv-text", "text"),
        ("csv-index0", "index0"),
        ("csv-index1", "index1"),
        ("tsv-opa", "index0"),
        ("jsonl-list", "index1"),
        ("jsonl-dict", "text"),
        ("parquet-cols", "letter"),
    ],
)
def test_every_mapping_style_gives_the_same_rows(tmp_path, style, form):
    bank = load_bank(str(style_file(tmp_path, style)))  # columns guessed, answer form detected
    assert bank.rows == EXPECTED
    assert bank.mapping["answer_as"] == form
    assert bank.format == {"csv": "csv", "tsv": "tsv", "jsonl": "json", "parquet": "parquet"}[style.split("-")[0]]


def test_an_explicit_mapping_matches_the_guessed_one(tmp_path):
    path = style_file(tmp_path, "csv-letter")
    given = ColumnMap(question="Question", option_cols=list("ABCD"), answer="Answer", answer_as="letter", id="id")
    assert load_bank(str(path), given).rows == load_bank(str(path)).rows == EXPECTED
    records, fmt = read_table(path)
    assert fmt == "csv" and len(records) == 4 and records[0]["A"] == "Vitamin A"
    assert banks.rows_from_records(records, given, "memory", "csv").rows == EXPECTED


def test_guess_mapping_finds_the_usual_names():
    assert guess_mapping(["id", "question", "opa", "opb", "opc", "opd", "cop", "subject_name", "exp"]) == ColumnMap(
        "question", ["opa", "opb", "opc", "opd"], None, "cop", None, "subject_name", "id", "exp"
    )
    assert guess_mapping(["Question", "Option_A", "Option_B", "Option_C", "Correct", "Category"]) == ColumnMap(
        "Question", ["Option_A", "Option_B", "Option_C"], answer="Correct", subject="Category"
    )
    assert guess_mapping(["question", "answer", "options", "answer_idx", "meta_info"]) == ColumnMap(
        "question", options_col="options", answer="answer_idx"
    )
    assert guess_mapping(["qid", "qtext", "ra", "answers", "category"]) == ColumnMap(
        "qtext", options_col="answers", answer="ra", subject="category", id="qid"
    )
    assert guess_mapping(["stem", "choices"]) == ColumnMap("stem", options_col="choices")
    assert guess_mapping(["Question", *(f"Choice{n}" for n in range(1, 6)), "Key", "Area"]) == ColumnMap(
        "Question", [f"Choice{n}" for n in range(1, 6)], answer="Key", subject="Area"
    )
    assert guess_mapping(["Stem", "Option A", "Option B", "Option C", "Answer", "Topic"]) == ColumnMap(
        "Stem", ["Option A", "Option B", "Option C"], answer="Answer", subject="Topic"
    )
    assert ColumnMap("q", ["only one"]).unmapped() and not ColumnMap("q", options_col="choices").unmapped()


@pytest.mark.parametrize("cell", ['["Liver", "Spleen", "Kidney"]', "['Liver', 'Spleen', 'Kidney']"])
def test_a_list_of_options_kept_as_text_in_a_csv_cell_is_read(tmp_path, cell):
    records = [{"question": "Largest solid organ?", "choices": cell, "answer": "A"}]
    bank = load_bank(str(write_csv(tmp_path / "bank.csv", ["question", "choices", "answer"], records)))
    assert [bank.rows[0][k] for k in ("opa", "opb", "opc")] == ["Liver", "Spleen", "Kidney"] and "opd" not in bank.rows[
        0
    ]


# --- option counts and the prompt -----------------------------------------------------------------------------


def test_two_to_five_options_keep_their_count_and_prompt(tmp_path):
    opts = ["Liver", "Spleen", "Kidney", "Heart", "Lung"]
    records = [
        {"id": f"n{n}", "question": f"Pick from {n}", **dict(zip("ABCDE", opts[:n])), "answer": "B"}
        for n in (2, 3, 4, 5)
    ]
    bank = load_bank(str(write_csv(tmp_path / "bank.csv", ["id", "question", *"ABCDE", "answer"], records)))
    assert [option_count(r) for r in bank.rows] == [2, 3, 4, 5] and bank.skipped == 0
    for row in bank.rows:
        n = option_count(row)
        assert set(row) == {"id", "question", "cop", *OPTION_KEYS[:n]}  # later keys absent, not None
        prompt = format_prompt(row)
        assert [f"{L}. {o}." in prompt for L, o in zip(LETTERS, opts)] == [True] * n + [False] * (5 - n)
    four = bank.rows[2]
    assert format_prompt(four) == PROMPT_TEMPLATE.format(
        question="Pick from 4", opa="Liver", opb="Spleen", opc="Kidney", opd="Heart"
    )


def test_options_from_lists_keep_their_count(tmp_path):
    path = write_jsonl(
        tmp_path / "bank.jsonl",
        [
            {"question": "Two?", "choices": ["Yes", "No"], "answer": "A"},
            {"question": "Five?", "choices": list("vwxyz"), "answer": "E"},
        ],
    )
    bank = load_bank(str(path))
    assert [row_options(r) for r in bank.rows] == [["Yes", "No"], list("vwxyz")]
    assert [r["cop"] for r in bank.rows] == [0, 4]


def test_cells_are_text_as_written(tmp_path):
    records = [{"question": 42, "A": "None", "B": "NA", "C": "1.50", "D": "  padded  ", "answer": "c"}]
    bank = load_bank(str(write_csv(tmp_path / "bank.csv", ["question", *"ABCD", "answer"], records)))
    assert bank.rows == [
        {"id": "row-1", "question": "42", "opa": "None", "opb": "NA", "opc": "1.50", "opd": "padded", "cop": 2}
    ]
    path = write_parquet(
        tmp_path / "bank.parquet", [{"question": "Dose?", "opa": 5, "opb": 10.0, "opc": 2.5, "cop": 0}]
    )
    assert row_options(load_bank(str(path)).rows[0]) == ["5", "10", "2.5"]


def test_a_utf8_file_with_a_byte_order_mark_loads(tmp_path):
    path = style_file(tmp_path, "csv-letter")
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())  # Excel's "CSV UTF-8"
    assert load_bank(str(path)).rows == EXPECTED
    path.write_bytes(b"\xef\xbb\xbfquestion,A,B,answer\n\xe9,a,b,A\n")  # the mark does not shift line numbers
    with pytest.raises(DataError, match="line 2 is not UTF-8"):
        load_bank(str(path))


def test_reading_a_file_never_calls_the_hub(tmp_path, monkeypatch):
    import datasets.load

    # datasets counts "csv"/"json" loads with a HEAD request to the hub, which stalls seconds on an offline machine
    monkeypatch.setattr(datasets.load, "get_session", lambda: pytest.fail("a local read called the hub"))
    assert load_bank(str(style_file(tmp_path, "csv-letter"))).rows == EXPECTED


# --- answer detection -----------------------------------------------------------------------------------------


def answers_file(tmp_path, answers, opts=("w", "x", "y", "z")):
    records = [{"question": f"Q{n}", **dict(zip("ABCD", opts)), "answer": a} for n, a in enumerate(answers)]
    return str(write_jsonl(tmp_path / "answers.jsonl", records))


@pytest.mark.parametrize(
    "answers,form,cops",
    [
        ([2, 0, 1], "index0", [2, 0, 1]),
        (["2", "4", "1"], "index1", [1, 3, 0]),
        (["B", " d ", "(a)", "C."], "letter", [1, 3, 0, 2]),
        (["x", " Z", "W  "], "text", [1, 3, 0]),
    ],
)
def test_answer_form_is_detected(tmp_path, answers, form, cops):
    bank = load_bank(answers_file(tmp_path, answers))
    assert bank.mapping["answer_as"] == form and [r["cop"] for r in bank.rows] == cops


def test_numbers_that_could_count_from_0_or_1_are_refused(tmp_path):
    path = answers_file(tmp_path, [1, 2, 3, 1])
    with pytest.raises(DataError, match="--answer-as index0 or --answer-as index1"):
        load_bank(path)
    assert [
        r["cop"] for r in load_bank(path, ColumnMap("question", list("ABCD"), answer="answer", answer_as="index1")).rows
    ] == [0, 1, 2, 0]


def test_answers_of_no_known_form_are_refused_with_examples(tmp_path):
    with pytest.raises(DataError, match=r"answer column 'answer'.*'maybe', 'sure'"):
        load_bank(answers_file(tmp_path, ["maybe", "sure", "maybe"]))


# --- rows that cannot be used ---------------------------------------------------------------------------------


def test_unusable_rows_are_skipped_counted_and_named(tmp_path):
    good = {"id": "ok", "question": "Fine?", "A": "a", "B": "b", "C": "c", "D": "d", "answer": "A"}
    records = [
        good,
        {**good, "id": "gap", "B": ""},
        {**good, "id": "one", "B": "", "C": "", "D": ""},
        {**good, "id": "beyond", "D": "", "answer": "D"},
        {**good, "id": "blank", "answer": " "},
        {**good, "id": "noq", "question": ""},
    ]
    with pytest.warns(InvalidRowsWarning, match="skipped 5"):
        bank = load_bank(str(write_csv(tmp_path / "bank.csv", list(good), records)))
    assert [r["id"] for r in bank.rows] == ["ok"] and bank.skipped == 5
    assert [s.split(" ")[0] for s in bank.skipped_ids] == ["gap", "one", "beyond", "blank", "noq"]
    assert "'D' is not one of its 3 options" in bank.skipped_ids[2] and "no answer" in bank.skipped_ids[3]


def test_lists_with_too_many_options_or_answers_out_of_range_are_skipped(tmp_path):
    records = [
        {"question": "ok", "choices": ["a", "b", "c"], "answer": 0},
        {"question": "six", "choices": list("abcdef"), "answer": 0},
        {"question": "far", "choices": ["a", "b"], "answer": 2},
    ]
    bank = load_quietly(str(write_jsonl(tmp_path / "bank.jsonl", records)))
    assert len(bank.rows) == 1 and bank.skipped == 2
    assert "6 options (at most 5)" in bank.skipped_ids[0] and "not one of its 2 options" in bank.skipped_ids[1]


def test_a_missing_answer_never_matches_an_option_spelled_none(tmp_path):
    records = [
        {"id": "a", "question": "Q1", "choices": ["None", "All"], "answer": "All"},
        {"id": "b", "question": "Q2", "choices": ["None", "All"], "answer": None},
        {"id": "c", "question": "Q3", "choices": ["None", "All"], "answer": "none"},
    ]
    bank = load_quietly(str(write_jsonl(tmp_path / "bank.jsonl", records)))
    assert bank.mapping["answer_as"] == "text" and [(r["id"], r["cop"]) for r in bank.rows] == [("a", 1), ("c", 0)]
    assert bank.skipped_ids == ["b (no answer)"]


def test_a_bank_without_answers_loads_without_cop(tmp_path):
    path = write_jsonl(tmp_path / "bank.jsonl", [{"question": q, "options": o} for _, q, o, _ in QUESTIONS])
    bank = load_bank(str(path))
    assert not bank.has_answers and [r["cop"] for r in bank.rows] == [None] * 4
    assert bank.mapping["answer"] is None and bank.mapping["answer_as"] is None
    assert bank.describe() == {
        "source": str(path.resolve()),
        "format": "json",
        "mapping": bank.mapping,
        "rows": 4,
        "skipped": 0,
    }


# --- bad input: one line that says what is wrong and what to do -----------------------------------------------


def bad_input(tmp_path, case):
    csv_text = style_file(tmp_path, "csv-letter").read_bytes()
    if case == "missing":
        return tmp_path / "nowhere.csv"
    if case == "empty":
        return write_bytes(tmp_path / "bank.jsonl", b"")
    if case == "header only":
        return write_bytes(tmp_path / "bank.csv", csv_text.splitlines(keepends=True)[0])
    if case == "empty parquet":
        return write_bytes(tmp_path / "bank.parquet", b"")
    if case == "excel":
        return write_bytes(tmp_path / "bank.xlsx", b"PK\x03\x04 spreadsheet")
    if case == "extension":
        return write_bytes(tmp_path / "bank.txt", csv_text)
    if case == "not csv":
        return write_bytes(tmp_path / "bank.csv", b'id,question\n1,"never closed\n')
    if case == "not json":
        return write_bytes(tmp_path / "bank.json", b"id,question\n1,what\n")
    if case == "not parquet":
        return write_bytes(tmp_path / "bank.parquet", csv_text)
    if case == "latin-1":
        return write_bytes(tmp_path / "bank.csv", csv_text.replace(b"Ulnar", "Ulnär".encode("latin-1")))
    if case == "null line":  # pyarrow's reader would take the whole process down
        return write_bytes(tmp_path / "bank.jsonl", b'{"question": "q", "choices": ["a", "b"]}\n\n null\n')
    if case == "unnamed column":
        return write_bytes(tmp_path / "bank.csv", b"question,,B\nq,a,b\n")
    raise AssertionError(case)


def write_bytes(path, data):
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    "case,words",
    [
        ("missing", "nowhere.csv does not exist"),
        ("empty", "holds no questions"),
        ("header only", "holds no questions"),
        ("empty parquet", "holds no questions"),
        ("excel", "is a spreadsheet; save it as CSV or Parquet"),
        ("extension", r"unsupported extension \.txt; use one of \.csv \.tsv \.json \.jsonl \.parquet"),
        ("not csv", r"is not a valid CSV file \(ParserError"),
        ("not json", r"is not a valid JSON file \("),
        ("not parquet", r"is not a valid Parquet file \(ArrowInvalid"),
        ("latin-1", "line 4 is not UTF-8 text; save the file as UTF-8"),
        ("unnamed column", "a column without a name"),
        ("null line", "line 3 is null, not a question; remove it"),
    ],
)
def test_bad_files_are_refused_in_one_line(tmp_path, case, words):
    with pytest.raises(DataError, match=words) as refused:
        load_bank(str(bad_input(tmp_path, case)))
    assert "\n" not in str(refused.value) and len(str(refused.value)) < 400


def test_a_file_over_the_size_limit_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(bank_files, "MAX_UPLOAD_MB", 1)
    path = write_bytes(tmp_path / "big.csv", b"question,A,B,answer\n" + b"q,a,b,A\n" * 150_000)
    with pytest.raises(DataError, match="over the 1 MB limit"):
        read_table(path)


@pytest.mark.parametrize(
    "mapping,words",
    [
        (
            ColumnMap("Questin", list("ABCD"), answer="Answer"),
            (
                r"no column 'Questin' \(did you mean 'Question'\?\); "
                r"the columns found are id, Question, A, B, C, D, Answer"
            ),
        ),
        (ColumnMap("Question", ["A", "B", "X"], answer="Anwser"), "no column 'X', 'Anwser'"),
        (ColumnMap("Question", answer="Answer"), "name either option columns or one column of option lists"),
        (ColumnMap("Question", list("ABCD"), "A", answer="Answer"), "name either option columns"),
        (ColumnMap(None, list("ABCD")), "name the question column"),
        (ColumnMap("Question", list("ABCD"), answer="Answer", answer_as="roman"), "unknown answer_as 'roman'"),
    ],
)
def test_mappings_that_do_not_fit_are_refused(tmp_path, mapping, words):
    with pytest.raises(DataError, match=words):
        load_bank(str(style_file(tmp_path, "csv-letter")), mapping)


def test_repeated_ids_are_refused(tmp_path):
    records = [{"id": i, "question": f"Q{n}", "choices": ["a", "b"], "answer": 0} for n, i in enumerate("xxyyzzw")]
    with pytest.raises(DataError, match="repeats the ids x, y, z in column 'id': ids must be unique"):
        load_bank(str(write_jsonl(tmp_path / "bank.jsonl", records)))


def test_a_bank_with_no_usable_row_is_refused(tmp_path):
    records = [{"question": "Q", "choices": ["only one"], "answer": 0}] * 3
    with pytest.raises(DataError, match=r"no usable question in .*: 3 rows skipped, e\.g\. row-1 \(missing option opb"):
        load_bank(str(write_jsonl(tmp_path / "bank.jsonl", records)))


# --- the hub, offline -----------------------------------------------------------------------------------------


def test_named_formats_and_hub_ids_fail_fast_offline(monkeypatch):
    import datasets

    monkeypatch.setattr("mcqa_core.hub.hub_reachable", lambda timeout=2.0: False)
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: pytest.fail("no load without the hub"))
    for source, where in (("medqa", r"\(GBaker/MedQA-USMLE-4-options\)"), ("some-org/their-bank", r"\(no such file")):
        with pytest.raises(DataError, match=f"cannot load {source} {where}.*cannot be reached.*loads offline") as no:
            load_bank(source)
        assert "\n" not in str(no.value)


def test_mmlu_configs_are_concatenated_with_their_subject(monkeypatch):
    import datasets

    calls = []

    def fake_load(hub, config, split):
        calls.append((hub, config, split))
        return [{"question": f"{config}?", "subject": "", "choices": ["a", "b", "c", "d"], "answer": 3}]

    monkeypatch.setattr("mcqa_core.hub.hub_reachable", lambda timeout=2.0: True)
    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    bank = load_bank("mmlu-medical")
    assert calls == [("cais/mmlu", c, "test") for c in NAMED_FORMATS["mmlu-medical"].configs]
    assert [r["subject_name"] for r in bank.rows] == NAMED_FORMATS["mmlu-medical"].configs
    assert (bank.source, bank.format, bank.rows[0]["cop"]) == ("hub:cais/mmlu", "mmlu-medical", 3)
    load_bank("mmlu-medical", split="validation")
    assert calls[-1][2] == "validation"


# --- the held-out part ----------------------------------------------------------------------------------------


def test_heldout_and_rest_split_the_bank_by_the_offline_rule(tmp_path):
    records = [{"id": f"item-{n}", "question": f"Q{n}", "choices": ["a", "b", "c"], "answer": n % 3} for n in range(60)]
    bank = load_bank(str(write_jsonl(tmp_path / "bank.jsonl", records)))
    held, rest = select_part(bank, "heldout"), select_part(bank, "rest")
    held_ids, rest_ids = {r["id"] for r in held.rows}, {r["id"] for r in rest.rows}
    assert held_ids and rest_ids and not held_ids & rest_ids
    assert held_ids | rest_ids == {r["id"] for r in bank.rows} == {r["id"] for r in select_part(bank, "all").rows}
    assert all(is_heldout(i) for i in held_ids) and not any(is_heldout(i) for i in rest_ids)
    assert [r["id"] for r in held.rows] == [r["id"] for r in bank.rows if r["id"] in held_ids]  # file order kept
    with pytest.raises(DataError, match="unknown part 'test'; choose one of all, heldout, rest"):
        select_part(bank, "test")
