"""Common mistakes and faults: a failed run never blocks the next, an interrupted checkpoint is set aside
and --resume continues from the newest complete one, no run trains zero steps, and every mistake is one
line with exit code 2 before anything slow starts."""

from __future__ import annotations

import errno
import json
import shutil
import subprocess
import sys
import time
import warnings

import pytest

from mcqa_core.errors import AdapterError, RunError
from mcqa_core.models.run_record import RUN_FILE
from mcqa_core.training.run import run_training
from mcqa_core.training.settings import load_config

from .app_helpers import make_tiny_adapter
from .conftest import REPO


def _smoke(out, data_dir, *flags):
    return load_config(["--preset", "smoke", "--data-dir", str(data_dir), "--output-dir", str(out), *flags])


def _cli(*args, cwd=REPO, timeout=300):
    started = time.perf_counter()
    r = subprocess.run([sys.executable, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=timeout)
    r.seconds = time.perf_counter() - started
    return r


def _one_line(r, message):
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2, r.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], r.stderr[-2000:]


def test_a_refused_run_creates_nothing_and_an_abandoned_attempt_is_reused(tmp_path, data_dir):
    out = tmp_path / "run"
    with pytest.raises(RunError, match="--learning-rate must be above 0, got -1.0"):
        run_training(_smoke(out, data_dir, "--learning-rate", "-1"))
    assert not out.exists()
    (out / "checkpoints").mkdir(parents=True)  # what a crash before the first checkpoint leaves
    record = run_training(_smoke(out, data_dir, "--max-steps", "2", "--eval-steps", "2", "--save-steps", "2"))
    assert record["metrics"]["global_steps"] == 2 and (out / RUN_FILE).exists()


def test_a_checkpoint_cut_short_by_a_full_disk_is_set_aside_and_resume_continues(tmp_path, data_dir, monkeypatch):
    from mcqa_core.training.trainer import MCQATrainer

    out = tmp_path / "run"
    real = MCQATrainer._save_rng_state

    def disk_full_at_step_6(self, output_dir):
        if self.state.global_step == 6:  # model and optimizer written, trainer_state.json not yet
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, output_dir)

    monkeypatch.setattr(MCQATrainer, "_save_rng_state", disk_full_at_step_6)
    with pytest.raises(
        RunError,
        match=r"training stopped at step 6: .*No space left on device.*--resume to continue "
        r"from checkpoint-3",
    ):
        run_training(_smoke(out, data_dir))
    monkeypatch.undo()
    assert not (out / RUN_FILE).exists()  # not a finished run...
    assert (out / "checkpoints" / "checkpoint-6").is_dir()  # ...and the cut checkpoint is there, incomplete
    with pytest.raises(
        RunError,
        match="holds an unfinished run \\(newest complete checkpoint: checkpoint-3\\); continue it with --resume",
    ):
        run_training(_smoke(out, data_dir))
    record = run_training(_smoke(out, data_dir, "--resume"))
    assert record["metrics"]["global_steps"] == 6
    assert [h["step"] for h in record["metrics"]["history"] if "loss" in h] == [1, 2, 3, 4, 5, 6]
    assert list((out / "checkpoints").glob(".incomplete-checkpoint-6-*"))  # set aside, not deleted
    assert not list(out.glob(".partial-*"))  # the adapter was moved into place whole


def test_runs_that_would_train_nothing_or_ignore_a_flag_are_refused(tmp_path, data_dir):
    out = tmp_path / "run"
    with pytest.raises(RunError, match="--num-train-epochs 0.0 trains no step"):
        run_training(_smoke(out, data_dir, "--max-steps", "-1", "--num-train-epochs", "0"))
    with pytest.raises(
        RunError, match="--num-train-epochs 1.0 has no effect: the smoke preset sets max_steps 6; pass --max-steps -1"
    ):
        run_training(_smoke(out, data_dir, "--num-train-epochs", "1"))
    with pytest.raises(RunError, match="--max-steps must be at least 1"):
        run_training(_smoke(out, data_dir, "--max-steps", "0"))
    assert not out.exists()
    assert load_config(["--preset", "smoke", "--num-train-epochs", "1", "--max-steps", "-1"]).explicit == [
        "train.max_steps",
        "train.num_train_epochs",
    ]


def test_bytes_that_are_not_utf8_are_a_counted_invalid_row(tmp_path, validation_rows):
    from mcqa_core.data.medmcqa import InvalidRowsWarning, load_split

    good = [json.dumps(r).encode() for r in validation_rows[:3]]
    (tmp_path / "validation.jsonl").write_bytes(b"\n".join([good[0], b'{"id": "x", "question": "caf\xe9"}', *good[1:]]))
    with pytest.warns(InvalidRowsWarning, match=r"validation.jsonl:2 \(not UTF-8 text \(byte 29\)\)"):
        split = load_split("validation", tmp_path)
    assert len(split.rows) == 3 and split.skipped == 1


def test_damaged_adapter_weights_are_named_as_damaged(tmp_path, tiny_model_path, data_dir):
    from mcqa_core.models.inference import load_model

    folder = make_tiny_adapter(tmp_path / "a", tiny_model_path)
    weights = folder / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(AdapterError, match="adapter_model.safetensors is damaged"):
        load_model(folder)
    r = _cli(
        "-m", "mcqa_core.cli.eval_command", "--adapter", folder, "--data-dir", data_dir, "--output", tmp_path / "r.json"
    )
    _one_line(r, "adapter_model.safetensors is damaged")
    weights.unlink()
    with pytest.raises(AdapterError, match="adapter_model.safetensors is missing"):
        load_model(folder)


def test_path_and_repo_mistakes_are_one_line_before_any_work(tmp_path, data_dir):
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    cases = [
        (["train_adapter.py", "--preset", "smoke", "--output-dir", a_file], "is a file, not a folder"),
        (
            ["train_adapter.py", "--preset", "smoke", "--output-dir", tmp_path / "o", "--data-dir", tmp_path / "none"],
            f"data folder {tmp_path / 'none'} does not exist",
        ),
        (
            ["-m", "mcqa_core.cli.eval_command", "--base-model", "tiny-random-llama", "--output", tmp_path],
            "is a folder; give a file name",
        ),
        (
            ["-m", "mcqa_core.cli.eval_command", "--base-model", "tiny-random-llama", "--output", a_file],
            "already exists; pass --overwrite",
        ),
        (
            ["-m", "mcqa_core.cli.publish_command", tmp_path, "not a repo id"],
            "REPO 'not a repo id' is not a hub repo id",
        ),
    ]
    for args, message in cases:
        r = _cli(*args)
        _one_line(r, message)
        assert "--push-to-hub" not in r.stderr
        assert r.seconds < 20, (args, r.seconds)  # generous for a loaded machine; the bench is 1-2 s


def test_evaluate_writes_reports_under_reports_and_never_over_one(tmp_path, data_dir):
    args = [
        "-m",
        "mcqa_core.cli.eval_command",
        "--base-model",
        "tiny-random-llama",
        "--data-dir",
        data_dir,
        "--limit",
        "4",
    ]
    r = _cli(*args, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    report = tmp_path / "reports" / "tiny-random-llama-heldout.json"
    assert json.loads(report.read_text())["n"] == 4
    before = report.read_bytes()
    _one_line(_cli(*args, cwd=tmp_path), "already exists; pass --overwrite")
    assert report.read_bytes() == before
    assert _cli(*args, "--overwrite", cwd=tmp_path).returncode == 0


def test_browse_with_a_missing_data_folder_says_so_and_does_not_spin(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    missing = tmp_path / "no-such-folder"
    monkeypatch.setenv("MCQA_DATA_DIR", str(missing))
    monkeypatch.setenv("MCQA_APP_BASE_MODEL", "tiny-random-llama")
    monkeypatch.setenv("MCQA_APP_4BIT", "0")
    monkeypatch.setenv("MCQA_ADAPTERS_DIR", str(tmp_path))
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120)
    at.run()
    at.switch_page("pages/browse.py").run()
    assert not at.exception
    assert any("no\\-such\\-folder does not exist" in i.value for i in at.info)
    at.text_input(key="browse_data_dir").input(str(tmp_path / "typed-missing")).run(timeout=60)  # once, not forever
    assert not at.exception
    assert any("typed\\-missing does not exist" in i.value for i in at.info)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        at.run(timeout=60)  # a plain rerun with the same text does not loop either
    assert not at.exception
    shutil.rmtree(tmp_path / "typed-missing", ignore_errors=True)


def test_overwrite_sets_the_earlier_run_aside_instead_of_mixing_with_it(tmp_path, data_dir):
    out = tmp_path / "run"
    flags = ["--max-steps", "3", "--eval-steps", "3", "--save-steps", "3"]
    first = run_training(_smoke(out, data_dir, *flags))
    record = run_training(_smoke(out, data_dir, *flags, "--seed", "1", "--overwrite"))
    aside = list(out.glob(".replaced-*"))
    assert len(aside) == 1 and (aside[0] / RUN_FILE).exists() and (aside[0] / "checkpoints").is_dir()
    old = json.loads((aside[0] / RUN_FILE).read_text())
    assert old["finished"] == first["finished"] and old["settings"]["train"]["seed"] == 0
    assert (
        json.loads((out / RUN_FILE).read_text())["settings"]["train"]["seed"]
        == 1
        == record["settings"]["train"]["seed"]
    )
    assert [p.name for p in (out / "checkpoints").glob("checkpoint-*")] == ["checkpoint-3"]
