"""Data, prompt, labels and configuration: behaviour on real MedMCQA rows and a real tokenizer."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import warnings

import pytest

from mcqa_core.data.features import IGNORE_INDEX, encode_example, encode_prompt
from mcqa_core.data.medmcqa import InvalidRowsWarning, is_heldout, load_split, validate_rows
from mcqa_core.data.prompt import format_completion, format_prompt
from mcqa_core.errors import DataError
from mcqa_core.training.settings import PRESETS_DIR, load_config, read_settings_file

from .conftest import REPO

FIRST_VALIDATION_PROMPT = (
    "Choose the correct option for the following question.\n\n"
    "### Question:\nWhich of the following is not true for myelinated nerve fibers:\n\n"
    "### Choice:\nA. Impulse through myelinated fibers is slower than non-myelinated fibers. "
    "B. Membrane currents are generated at nodes of Ranvier. C. Saltatory conduction of impulses is seen. "
    "D. Local anesthesia is effective only when the nerve is not covered by myelin sheath.\n\n"
    "### Answer:\n"
)


def test_format_prompt_first_validation_row_to_the_character(validation_rows):
    assert format_prompt(validation_rows[0]) == FIRST_VALIDATION_PROMPT
    assert format_completion(validation_rows[0]) == (
        "A Impulse through myelinated fibers is slower than non-myelinated fibers"
    )


def test_offline_split_sizes_and_disjoint(data_dir):
    held = load_split("heldout", data_dir).rows
    demo = load_split("demo-train", data_dir).rows
    dev = load_split("demo-dev", data_dir).rows
    assert (len(held), len(demo), len(dev)) == (1074, 2800, 309) and len(demo) + len(dev) == 3109
    ids = [{r["id"] for r in part} for part in (held, demo, dev)]
    assert not ids[0] & ids[1] and not ids[0] & ids[2] and not ids[1] & ids[2]
    assert all(is_heldout(r["id"]) for r in held)
    always_a = sum(r["cop"] == 0 for r in held) / len(held)
    assert always_a == pytest.approx(0.315, abs=0.001)


def test_invalid_rows_are_skipped_counted_and_named(tmp_path, validation_rows):
    good = validation_rows[:3]
    lines = [json.dumps(r) for r in good]
    lines += [
        json.dumps(dict(good[0], id="no-option", opc="")),
        json.dumps(dict(good[0], id="bad-cop", cop=4)),
        json.dumps(dict(good[0], id="empty-q", question="  ")),
        "{not json",
    ]
    (tmp_path / "validation.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.warns(InvalidRowsWarning, match=r"skipped 4 invalid row\(s\).*no-option.*bad-cop.*empty-q"):
        split = load_split("validation", tmp_path)
    assert len(split.rows) == 3 and split.skipped == 4


def test_data_errors_say_what_to_do(tmp_path):
    with pytest.raises(DataError, match="no validation.jsonl.*--data-dir"):
        load_split("validation", tmp_path)
    with pytest.raises(DataError, match="unknown split"):
        load_split("test", tmp_path)
    (tmp_path / "validation.jsonl").write_text(json.dumps({"id": "x", "question": "q"}) + "\n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(DataError, match="no valid rows"):
            load_split("validation", tmp_path)


def test_boolean_cop_is_not_an_answer_index():
    with pytest.warns(InvalidRowsWarning, match="cop True"):
        validate_rows([{"id": "a", "question": "q", "opa": "1", "opb": "2", "opc": "3", "opd": "4", "cop": True}])


def test_labels_exact_for_one_row(tokenizer, validation_rows):
    row = validation_rows[0]
    ex = encode_example(tokenizer, row, 512)
    prompt_ids = tokenizer(format_prompt(row))["input_ids"]
    answer_ids = tokenizer(format_completion(row), add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    assert ex["input_ids"] == prompt_ids + answer_ids
    assert ex["labels"] == [IGNORE_INDEX] * len(prompt_ids) + answer_ids
    assert ex["labels"][-1] == tokenizer.eos_token_id
    assert all(lab in (IGNORE_INDEX, tok) for lab, tok in zip(ex["labels"], ex["input_ids"]))


def test_collator_pads_labels_with_ignore_index(tokenizer, validation_rows):
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    a, b = (encode_example(tokenizer, r, 512) for r in validation_rows[:2])
    batch = DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id)(
        [{"input_ids": a["input_ids"], "labels": a["labels"]}, {"input_ids": b["input_ids"], "labels": b["labels"]}]
    )
    short = 0 if len(a["input_ids"]) < len(b["input_ids"]) else 1
    n = min(len(a["input_ids"]), len(b["input_ids"]))
    assert batch["labels"][short, n:].eq(IGNORE_INDEX).all()
    assert batch["attention_mask"][short, n:].eq(0).all()
    assert batch["labels"][short, :n].tolist() == [a, b][short]["labels"]


def test_overflowing_question_keeps_options_and_completion(tokenizer, validation_rows):
    row = dict(validation_rows[5], question="Which nerve is involved? " * 120)
    ex = encode_example(tokenizer, row, 160)
    assert ex is not None and len(ex["input_ids"]) <= 160
    text = tokenizer.decode(ex["input_ids"])
    for key in ("opa", "opb", "opc", "opd"):
        assert row[key] in text
    assert text.endswith(format_completion(row) + tokenizer.eos_token)
    assert ex["shortened"]
    # too small for even the options: skipped, not truncated into nonsense
    assert encode_example(tokenizer, row, 40) is None
    assert encode_prompt(tokenizer, validation_rows[0], 512).shortened is False


def test_config_precedence_defaults_preset_yaml_flags(tmp_path):
    course = load_config([])
    assert (
        course.model.model_name,
        course.train.per_device_train_batch_size,
        course.train.gradient_accumulation_steps,
        course.lora.lora_r,
        course.lora.use_rslora,
    ) == ("unsloth/Llama-3.2-1B-bnb-4bit", 64, 16, 16, True)
    yaml_file = tmp_path / "run.yaml"
    yaml_file.write_text("preset: smoke\nlearning_rate: 0.01\ntrain:\n  max_steps: 9\nlora:\n  r: 4\n")
    cfg = load_config(["--config", str(yaml_file), "--max-steps", "2"])
    assert cfg.preset == "smoke" and cfg.train.learning_rate == 0.01 and cfg.lora.lora_r == 4
    assert cfg.train.max_steps == 2  # the flag wins over the file
    assert cfg.model.model_name == read_settings_file(PRESETS_DIR / "smoke.yaml", "smoke")["model"]["model_name"]
    with pytest.raises(ValueError, match="unknown setting 'lerning_rate'"):
        yaml_file.write_text("lerning_rate: 1\n")
        load_config(["--config", str(yaml_file)])


def test_cli_rejects_unknown_preset_and_help_is_fast():
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "train_adapter.py", "--help"], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0 and "--preset" in out.stdout and "--max-steps" in out.stdout
    assert time.perf_counter() - started < 3
    bad = subprocess.run(
        [sys.executable, "train_adapter.py", "--preset", "nope"], cwd=REPO, capture_output=True, text=True
    )
    assert bad.returncode == 2 and "invalid choice: 'nope'" in bad.stderr


def test_letter_only_completion_puts_the_labels_on_the_letter(tokenizer, validation_rows):
    row = validation_rows[0]
    ex = encode_example(tokenizer, row, 512, completion="letter")
    prompt_ids = tokenizer(format_prompt(row))["input_ids"]
    letter = tokenizer(format_completion(row, completion="letter"), add_special_tokens=False)["input_ids"]
    assert format_completion(row, completion="letter") == "A" and len(letter) == 1
    assert ex["input_ids"] == prompt_ids + letter + [tokenizer.eos_token_id]
    assert ex["labels"] == [IGNORE_INDEX] * len(prompt_ids) + letter + [tokenizer.eos_token_id]
    # the scorer reads exactly that token
    from mcqa_core.evaluation.letter_scoring import letter_token_ids

    assert letter[0] == letter_token_ids(tokenizer)[0]
