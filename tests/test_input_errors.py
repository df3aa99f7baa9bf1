"""The last bad inputs and faults: a full disk, banks with a sixth option or answers that name no option, output
places nothing can be written to, settings files that are empty, repeat a setting or hold several problems, data
files that are empty or folders that are files, and a damaged adapter_config.json. Each is one "error:" line with
exit code 2 before any slow work (the commands run in-process through their main), and nothing saved is lost."""

from __future__ import annotations

import errno
import json
import os
import re
import time
import warnings
from pathlib import Path

import pytest

from mcqa_core.cli import eval_command as eval_cli
from mcqa_core.cli import export_command as export_cli
from mcqa_core.cli import train_command as train_cli
from mcqa_core.data.banks.bank_rows import load_bank
from mcqa_core.data.medmcqa import InvalidRowsWarning
from mcqa_core.errors import DataError
from mcqa_core.training.status_files import read_status


def _refused(capsys, main, argv, *words, alone=True) -> str:
    """The command exits 2 with one "error:" line holding `words` (and, `alone`, nothing else on stderr but an
    older spelling's one-line notice)."""
    capsys.readouterr()  # what the test printed before
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    errors = re.findall(r"error: [^\r\n]*", err)  # after a progress bar's last \r, when training ran
    assert code == 2 and len(errors) == 1 and "Traceback" not in err, err[-3000:]
    assert not alone or [x for x in err.strip().splitlines() if not x.startswith("notice:")] == errors, err[-3000:]
    for word in words:
        assert word in errors[0], errors[0]
    return errors[0]


def _smoke(out, data_dir, *flags):
    return [
        "--preset",
        "smoke",
        "--data-dir",
        data_dir,
        "--output-dir",
        out,
        "--max-steps",
        "1",
        "--eval-steps",
        "1",
        "--save-steps",
        "1",
        *flags,
    ]


# --- a full disk ------------------------------------------------------------------------------------------------


def test_a_full_disk_is_one_line_and_the_status_says_failed(tmp_path, data_dir, tokenizer, monkeypatch, capsys):
    def no_space(*args, **kwargs):  # what the tokenizers library raises on a full disk: not an OSError
        raise Exception("No space left on device (os error 28)")

    real_write_status = train_cli.write_status

    def no_new_file(out, state, **fields):  # the atomic write of status.json needs a new file: refused too
        if state == "failed":
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write_status(out, state, **fields)

    monkeypatch.setattr(train_cli, "write_status", no_new_file)
    monkeypatch.setattr(type(tokenizer), "save_pretrained", no_space)  # the first checkpoint's tokenizer
    out = tmp_path / "run"
    _refused(
        capsys,
        train_cli.main,
        _smoke(out, data_dir),
        "training stopped at step 1",
        "No space left on device",
        "rerun the same command",
        alone=False,
    )
    status = read_status(out)
    assert status["state"] == "failed" and "No space left on device" in status["error"]
    assert status["pid"] == os.getpid()  # the rest of the status kept, so the page still knows whose run it was

    # The adapter's own save after training, and status.json beyond rewriting: still one line, and that line says
    # the status could not be updated.
    monkeypatch.undo()
    monkeypatch.setattr("mcqa_core.training.finished_run.save_atomically", no_space)
    monkeypatch.setattr(train_cli, "write_status", no_new_file)

    def no_rewrite(path, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(train_cli, "rewrite_in_place", no_rewrite)
    out = tmp_path / "run2"
    code = train_cli.main([str(a) for a in _smoke(out, data_dir)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err, err[-3000:]
    [line] = re.findall(r"error: [^\r\n]*", err)
    assert "the disk is full" in line and "--resume to continue from checkpoint-1" in line
    assert f"{out / 'status.json'} still says running: it could not be updated (OSError:" in line
    assert (out / "checkpoints" / "checkpoint-1" / "trainer_state.json").exists()  # nothing saved is lost


# --- banks whose columns are guessed ----------------------------------------------------------------------------


def _bank(tmp_path, records) -> str:
    path = tmp_path / "bank.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


def _row(n, answer, options="wxyz"):
    return {"question": f"Q{n}", **{"ABCDEF"[k]: o for k, o in enumerate(options)}, "answer": answer}


def test_rows_with_a_sixth_option_are_skipped_and_counted_never_cut_to_five(tmp_path):
    records = [_row(n, "ABCD"[n % 4]) | {"E": "", "F": ""} for n in range(6)] + [_row(6, "F", "uvwxyz")]
    with pytest.warns(InvalidRowsWarning, match="skipped 1"):
        bank = load_bank(_bank(tmp_path, records))
    assert bank.mapping["option_cols"] == list("ABCDEF")
    assert len(bank.rows) == 6 and bank.skipped == 1 and "row-7 (6 options (at most 5))" in bank.skipped_ids


@pytest.mark.parametrize(
    "answers,form",
    [
        (["A", "B", "C", "D"] * 2 + ["A", "B", "F", "G"], "letter"),  # 2 of 12 letters past the 4 options
        ([0, 1, 2, 3] * 2 + [0, 1, "n/a", 9], "index0"),
        (["w", "x", "y", "z"] * 2 + ["w", "x", "wrong", "zz"], "text"),
    ],
)
def test_answers_that_name_no_option_are_skipped_when_the_rest_is_fine(tmp_path, answers, form, capsys):
    with pytest.warns(InvalidRowsWarning, match="skipped 2"):
        bank = load_bank(_bank(tmp_path, [_row(n, a) for n, a in enumerate(answers)]))
    assert bank.mapping["answer_as"] == form and len(bank.rows) == 10
    assert all("is not one of its 4 options" in s for s in bank.skipped_ids)
    unknowable = _bank(tmp_path, [_row(n, a) for n, a in enumerate(answers[:4] + ["?", "-", "?", "x"])])
    with pytest.raises(DataError, match="cannot tell how answer column 'answer' names the answer"):
        load_bank(unknowable)
    # and from the command, one line: no progress bar of the file read before it
    _refused(
        capsys,
        eval_cli.main,
        ["--base-model", "tiny-random-llama", "--bank", unknowable, "--output", tmp_path / "r.json"],
        "cannot tell how answer column",
    )


# --- output places nothing can be written to --------------------------------------------------------------------


def test_unwritable_output_places_are_named_before_any_work(tmp_path, data_dir, tiny_model_path, capsys, monkeypatch):
    from tests.app_helpers import make_tiny_adapter

    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    for place in ("/proc/mcqa-run", "/sys/mcqa-run", a_file / "run"):
        started = time.perf_counter()
        _refused(capsys, train_cli.main, _smoke(place, data_dir), f"--output-dir {place}", "writ")
        assert time.perf_counter() - started < 5
    monkeypatch.setattr("mcqa_core.evaluation.measure.measure", lambda *a, **k: pytest.fail("scored first"))
    adapter = make_tiny_adapter(tmp_path / "adapter", tiny_model_path)
    for place, words in (
        ("/proc/r.json", "/proc is not writable"),
        ("/sys/r.json", "/sys is not writable"),
        (a_file / "r.json", "is a file, so nothing can be written under it"),
    ):
        line = _refused(
            capsys,
            eval_cli.main,
            ["--adapter", adapter, "--data-dir", data_dir, "--output", place],
            f"--output {place}",
            words,
        )
        assert "mkdir" not in line
        _refused(capsys, export_cli.main, ["--adapter", adapter, "--out", Path(place).with_suffix("")], words)
    assert not list(Path("/proc").glob(".mcqa-write-check-*"))


# --- settings files ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,words",
    [
        ("", "is empty (no settings)"),
        ("# only a comment\n", "is empty (no settings)"),
        ("max_steps: 3\nmax-steps: 4\n", "'max_steps' and 'max-steps' both set max_steps; keep one"),
        ("train:\n  max_steps: 3\nmax_steps: 4\n", "'train.max_steps' and 'max_steps' both set max_steps"),
        ("max_steps: 3\nlora_r: 4\nmax_steps: 4\n", "at line 3, column 1 ('max_steps' is given twice; keep one)"),
        (
            "lerning_rate: 1\nmax_steps: abc\nlora_r: 0\n",
            "3 problems: unknown setting 'lerning_rate' (`--help` lists "
            "them); max_steps: expected a whole number, got 'abc'; --lora-r must be at least 1, got 0",
        ),
    ],
)
def test_settings_file_problems_are_named_all_at_once(tmp_path, capsys, text, words):
    config = tmp_path / "run.yaml"
    config.write_text(text)
    _refused(
        capsys,
        train_cli.main,
        ["--preset", "smoke", "--config", config, "--output-dir", tmp_path / "o"],
        f"error: --config {config}: ",
        words,
    )
    assert not (tmp_path / "o").exists()


def test_a_refused_value_is_not_also_blamed_for_what_it_would_have_combined_with(tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_text("save_steps: many\neval_steps: 3\n")  # save_steps stays 2: no multiple of 3, not named
    line = _refused(capsys, train_cli.main, ["--preset", "smoke", "--config", config], "save_steps: expected")
    assert "multiple" not in line


# --- data folders and files -------------------------------------------------------------------------------------


def test_an_empty_data_file_and_a_data_dir_that_is_a_file_say_so(tmp_path, capsys):
    (tmp_path / "validation.jsonl").write_text("\n\n")
    _refused(
        capsys,
        eval_cli.main,
        ["--base-model", "tiny-random-llama", "--data-dir", tmp_path, "--output", tmp_path / "r.json"],
        f"{tmp_path / 'validation.jsonl'} is empty (no rows)",
    )
    _refused(
        capsys,
        train_cli.main,
        ["--preset", "smoke", "--data-dir", tmp_path / "validation.jsonl", "--output-dir", tmp_path / "o"],
        f"data folder {tmp_path / 'validation.jsonl'} is a file, not a folder",
    )
    assert not (tmp_path / "o").exists()


def test_a_data_file_without_rows_of_the_split_says_which_split(tmp_path, validation_rows):
    from mcqa_core.data.medmcqa import is_heldout, load_split

    rows = [r for r in validation_rows if not is_heldout(r["id"])][:3]
    (tmp_path / "validation.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "0 invalid" warning either
        with pytest.raises(DataError, match=r"\[heldout\] has no rows: none of the 3 validation rows falls in heldout"):
            load_split("heldout", tmp_path)


# --- a damaged adapter ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", "\xff"])
def test_an_adapter_config_that_is_not_json_is_a_damaged_adapter_in_under_a_second(
    tmp_path, data_dir, tiny_model_path, capsys, text
):
    from tests.app_helpers import make_tiny_adapter

    adapter = make_tiny_adapter(tmp_path / "adapter", tiny_model_path)
    (adapter / "adapter_config.json").write_text(text, encoding="latin-1")
    for main, argv in (
        (eval_cli.main, ["--adapter", adapter, "--data-dir", data_dir, "--output", tmp_path / "r.json"]),
        (export_cli.main, ["--adapter", adapter, "--out", tmp_path / "m"]),
    ):
        started = time.perf_counter()
        _refused(capsys, main, argv, "adapter_config.json is damaged", "retrain it")
        assert time.perf_counter() - started < 1
    assert not (tmp_path / "r.json").exists() and not (tmp_path / "m").exists()


@pytest.mark.parametrize("value", ["-inf", "-1e-3", "-5", "-nan"])
def test_a_negative_number_after_a_flag_is_its_value_and_the_setting_names_it(value, capsys):
    from mcqa_core.errors import SettingsError
    from mcqa_core.training.checks import config_problems
    from mcqa_core.training.settings import load_config

    try:
        problems = config_problems(load_config(["--preset", "smoke", "--learning-rate", value]))
    except SettingsError as e:
        problems = [str(e)]
    except SystemExit as e:  # inf and nan are refused while the flag is read, in one line
        assert e.code == 2
        problems = [capsys.readouterr().err]
    assert any("learning-rate" in p or "learning_rate" in p for p in problems), problems
    assert not any("expected one argument" in p for p in problems)
