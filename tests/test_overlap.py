"""Train/test overlap on a bank built with known duplicates and near-duplicates, and in the reports that state it."""

from __future__ import annotations

import json

from mcqa_core.data.overlap import find_overlap
from mcqa_core.evaluation.clean_subset import overlap_block

STEM = "A 45 year old man presents with crushing chest pain radiating to the left arm and sweating for two hours"


def row(i, question, options=("Aspirin", "Insulin", "Digoxin", "Heparin"), cop=0):
    return {"id": i, "question": question, **dict(zip(("opa", "opb", "opc", "opd"), options)), "cop": cop}


TRAIN = [
    row("t1", STEM + ". What is the first drug to give?"),
    row("t2", "Which vitamin deficiency causes scurvy?", ("A", "C", "D", "K"), 1),
    row("t3", "Drug of choice for absence seizures", ("Ethosuximide", "Phenytoin", "Carbamazepine", "Lamotrigine")),
]
TEST = [
    row("exact", "which VITAMIN deficiency, causes scurvy", ("a", "c", "d", "k"), 1),  # case and punctuation only
    row("near", STEM + " in the emergency room. Which drug first?"),  # shares 13 words of the stem
    row("short", "Drug of choice for absence seizures?", ("Valproate", "Phenytoin", "Carbamazepine", "Lamotrigine")),
    row("new", "Which nerve supplies the deltoid muscle?", ("Radial", "Ulnar", "Median", "Axillary"), 3),
]


def test_exact_and_near_duplicates_are_counted_and_the_rest_is_clean():
    found = find_overlap(TRAIN, TEST)
    assert found["exact"] == ["exact"] and found["near"] == ["near"]
    assert found["ngram"] == 13 and found["train_rows"] == 3 and found["test_rows"] == 4
    # 12 words in common are not a 13-gram: a short row that differs in one option is not an overlap
    assert "short" not in found["near"] and find_overlap(TRAIN, TEST, n=5)["near"] == ["near", "short"]
    preds = [{"id": r["id"], "pred": "A", "gold": "ABCD"[r["cop"]]} for r in TEST]  # right on near and short
    block = overlap_block({"n": 4, "predictions": preds}, found, "demo-train (3 rows)")
    assert block["overlapping"] == 2 and block["clean"]["n"] == 2 and block["clean"]["accuracy"] == 0.5
    assert "13-gram" in block["rule"]


def test_mcqa_eval_states_the_adapters_overlap_and_the_clean_accuracy(tmp_path, smoke_adapter, data_dir, capsys):
    from mcqa_core.cli.eval_command import main as mcqa_eval
    from mcqa_core.data.medmcqa import load_split
    from mcqa_core.data.overlap import find_overlap as again

    adapter, _ = smoke_adapter
    out = tmp_path / "r.json"
    assert (
        mcqa_eval(["--adapter", str(adapter), "--data-dir", str(data_dir), "--limit", "40", "--output", str(out)]) == 0
    )
    block = json.loads(out.read_text())["overlap"]
    train = load_split("demo-train", data_dir, 32).rows  # the smoke preset's training rows
    expected = again(train, load_split("heldout", data_dir, 40).rows)
    assert (block["exact"], block["near"]) == (expected["exact"], expected["near"])
    assert block["trained_on"] == "demo-train (32 rows)" and block["clean"]["n"] == 40 - block["overlapping"]
    assert "questions are in the adapter's training rows" in capsys.readouterr().err
    training_report = json.loads((adapter / "eval_report.json").read_text())
    assert training_report["overlap"]["train_rows"] == 32  # the report written at training end states it too
