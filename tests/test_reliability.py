"""Faults a hostile but fair user tries (issue 40), each against a real process or file: settings the libraries
checked late (optimizer, schedule, LoRA targets) refused in one line before torch; Ctrl-C as safe as Stop, and a
second Ctrl-C that aborts at once; one run per output folder; a sweep whose grid is checked whole."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mcqa_core.cli.sweep_command import main as mcqa_sweep
from mcqa_core.models.architecture import layer_names, module_names
from mcqa_core.models.run_record import RUN_FILE
from mcqa_core.training.checks import config_problems
from mcqa_core.training.output_folder import checkpoints, is_complete_checkpoint, lock_holder
from mcqa_core.training.settings import load_config
from mcqa_core.training.status_files import read_progress, read_status
from mcqa_core.training.trainer_names import OPTIMIZERS, SCHEDULERS, transformers_names

from .conftest import REPO

REFUSE_THEN_SAY_IF_TORCH = (
    "import sys\nfrom mcqa_core.cli.train_command import main\ncode = main(sys.argv[1:])\n"
    "print('torch imported:', 'torch' in sys.modules)\nsys.exit(code)\n"
)


def _one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in stderr, stderr[-3000:]
    return lines[0]


# --- 1. settings the libraries checked late -------------------------------------------------------------------


@pytest.mark.parametrize(
    "flags,words",
    [
        (["--optim", "sgd_turbo"], "--optim 'sgd_turbo' is not one of transformers' optimizers; did you mean sgd?"),
        (["--lr-scheduler-type", "zigzag"], "--lr-scheduler-type 'zigzag' is not one of transformers' learning-rate"),
        (
            ["--target-modules", "foo_proj,bar"],
            "--target-modules: tiny-random-llama has no module named foo_proj or bar; LoRA can target its layers",
        ),
    ],
)
def test_optimizer_schedule_and_targets_are_refused_in_one_line_before_torch(tmp_path, data_dir, flags, words):
    out = tmp_path / "run"
    argv = ["--preset", "smoke", "--data-dir", str(data_dir), "--output-dir", str(out), *flags]
    started = time.perf_counter()
    r = subprocess.run(
        [sys.executable, "-c", REFUSE_THEN_SAY_IF_TORCH, *argv], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    seconds = time.perf_counter() - started
    assert r.returncode == 2 and words in _one_error_line(r.stderr), r.stderr[-3000:]
    assert "torch imported: False" in r.stdout and seconds < 2, (r.stdout, seconds)
    assert not out.exists()  # not even a status.json saying "failed"


def test_the_names_read_from_transformers_source_are_its_own_enums():
    from transformers.trainer_utils import SchedulerType
    from transformers.training_args import OptimizerNames

    assert transformers_names(*OPTIMIZERS) == tuple(o.value for o in OptimizerNames)
    assert transformers_names(*SCHEDULERS) == tuple(s.value for s in SchedulerType)


def test_targets_come_from_the_meta_device_without_weights_and_are_skipped_for_models_not_here(
    tmp_path, tiny_model_path, monkeypatch
):
    config_only = tmp_path / "config-only"
    config_only.mkdir()
    shutil.copy(Path(tiny_model_path) / "config.json", config_only)
    built, saved = module_names(str(config_only)), module_names(tiny_model_path)
    assert sorted(layer_names(built)) == sorted(layer_names(saved))  # the meta-device model and the header agree
    assert {m for m, dims in built.items() if dims} == {m for m, dims in saved.items() if dims}

    def problems(*flags):
        return [p for p in config_problems(load_config(["--preset", "smoke", *flags])) if "--target-modules" in p]

    assert problems("--model-name", str(config_only), "--target-modules", "q_proj,self_attn.v_proj") == []
    assert (
        "has no module named foo_proj" in problems("--model-name", str(config_only), "--target-modules", "foo_proj")[0]
    )
    assert "drop lm_head" in problems("--target-modules", "q_proj,lm_head")[0]  # TRL refuses it after loading
    flags = ["--target-modules", "foo_proj"]
    assert problems("--peft-method", "full", "--no-load-in-4bit", *flags) == []  # targets are LoRA's alone
    monkeypatch.setenv("MCQA_CACHE_DIR", str(tmp_path / "empty-cache"))  # the alias is not converted here
    assert module_names("tiny-random-llama") is None and problems(*flags) == []
    assert module_names("someone/not-in-the-hf-cache") is None  # never downloaded to check


# --- 2. Ctrl-C ------------------------------------------------------------------------------------------------


def _start(tmp_path, name, argv):
    """train_adapter.py in its own session (as a terminal's foreground job), output in tmp_path/name.out/.err."""
    out, err = (open(tmp_path / f"{name}.{s}", "w") for s in ("out", "err"))
    cmd = [sys.executable, "train_adapter.py", *map(str, argv)]
    return subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=err, start_new_session=True)


def _wait_for(proc, condition, what, timeout=300):
    deadline = time.time() + timeout
    while not condition():
        assert proc.poll() is None, f"the run ended (exit {proc.returncode}) before {what}"
        assert time.time() < deadline, f"no {what} in {timeout} s"
        time.sleep(0.1)


def _logged_step(out) -> int:
    return max((r["step"] for r in read_progress(out) if r.get("event") == "log"), default=0)


def _finish(proc, timeout=300) -> int:
    try:
        return proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_ctrl_c_mid_run_saves_its_step_exits_130_and_the_printed_command_resumes_there(tmp_path, data_dir):
    out = tmp_path / "run"
    argv = ["--preset", "smoke", "--data-dir", data_dir, "--output-dir", out, "--no-report-base"]
    argv += ["--max-steps", "10", "--save-steps", "5", "--eval-steps", "5"]
    proc = _start(tmp_path, "first", argv)
    try:
        _wait_for(proc, lambda: _logged_step(out) > 1, "step past 1")
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal sends: the whole foreground group
    finally:
        code = _finish(proc)
    stdout, stderr = (tmp_path / "first.out").read_text(), (tmp_path / "first.err").read_text()
    assert code == 130 and "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr[-3000:]
    status = read_status(out)
    step = status["step"]
    assert status["state"] == "stopped" and 1 < step < 10 and "error" not in status
    complete, _ = checkpoints(out)
    assert complete[-1].name == f"checkpoint-{step}" and is_complete_checkpoint(complete[-1])
    [line] = [x for x in stdout.splitlines() if x.startswith("stopped by Ctrl-C")]
    assert f"at step {step}, saved as {complete[-1]}; continue with: python train_adapter.py " in line
    resume = shlex.split(line.partition("continue with: ")[2])
    assert resume[-1] == "--resume" and resume[0] == "python"

    r = subprocess.run([sys.executable, *resume[1:]], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    progress = read_progress(out)
    assert [x["step"] for x in progress if x["event"] == "begin"] == [0, step]  # resumed at the stop step
    assert [x["step"] for x in progress if x["event"] == "log"] == list(range(1, 11))  # no step lost or repeated
    assert json.loads((out / RUN_FILE).read_text())["metrics"]["global_steps"] == 10


def test_a_second_ctrl_c_aborts_at_once_and_says_what_was_kept(tmp_path, data_dir):
    out = tmp_path / "run"
    argv = ["--preset", "smoke", "--data-dir", data_dir, "--output-dir", out, "--max-steps", "200"]
    proc = _start(tmp_path, "run", [*argv, "--save-steps", "2", "--eval-steps", "2"])
    err = tmp_path / "run.err"
    try:
        _wait_for(proc, lambda: any(r.get("event") == "save" for r in read_progress(out)), "checkpoint")
        os.killpg(proc.pid, signal.SIGINT)
        _wait_for(proc, lambda: "Ctrl-C again aborts at once" in err.read_text(), "notice of the first Ctrl-C", 60)
        os.killpg(proc.pid, signal.SIGINT)
    finally:
        code = _finish(proc, timeout=30)  # at once: not after a step, an evaluation or a save
    stderr = err.read_text()
    assert code == 130 and "Traceback" not in stderr, stderr[-3000:]
    [line] = [x for x in stderr.splitlines() if x.startswith("aborted")]
    complete, _ = checkpoints(out)
    assert line == f"aborted: {complete[-1]} is kept; continue from it with the same command and --resume"
    assert read_status(out)["state"] == "stopped" and read_status(out)["step"] == int(complete[-1].name.split("-")[1])


# --- 3. one run per output folder -----------------------------------------------------------------------------


def test_a_second_run_into_a_live_runs_folder_is_refused_and_the_first_finishes_untouched(tmp_path, data_dir):
    out = tmp_path / "run"
    argv = ["--preset", "smoke", "--data-dir", data_dir, "--output-dir", out, "--no-report-base"]
    argv += ["--max-steps", "8", "--save-steps", "4", "--eval-steps", "4"]
    first = _start(tmp_path, "first", argv)
    try:
        _wait_for(first, lambda: _logged_step(out) >= 1, "first step")
        os.killpg(first.pid, signal.SIGSTOP)  # held mid-run, however fast this machine trains; the lock stays held
        status = (out / "status.json").read_text()
        for extra in (
            [],
            ["--overwrite"],
            ["--resume"],
            ["--max-steps", "6", "--eval-steps", "3", "--save-steps", "3"],
        ):
            started = time.perf_counter()
            cmd = [sys.executable, "train_adapter.py", *map(str, argv), *extra]
            r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
            line = _one_error_line(r.stderr)
            assert r.returncode == 2 and f"{out} is in use by a live run (process {first.pid}, started " in line
            assert time.perf_counter() - started < 5, "refused before any work"
            assert (out / "status.json").read_text() == status  # not rewritten
        os.killpg(first.pid, signal.SIGCONT)
    finally:
        code = _finish(first)
    assert code == 0, (tmp_path / "first.err").read_text()[-3000:]
    progress = read_progress(out)
    assert [r["step"] for r in progress if r["event"] == "begin"] == [0]  # one run's lines only
    assert [r["step"] for r in progress if r["event"] == "log"] == list(range(1, 9))
    assert (out / RUN_FILE).exists() and not list(out.glob(".replaced-*"))
    assert lock_holder(out) is None  # given back when the run ended


# --- 6. a sweep checks its grid whole -------------------------------------------------------------------------


def test_a_sweep_with_one_bad_grid_point_is_refused_before_the_first_trial(tmp_path, capsys):
    space, study = tmp_path / "space.yaml", tmp_path / "study"
    space.write_text("grid:\n  learning_rate: [1.0e-3, -5, -.inf]\n  lora_r: [4, 8]\n")
    started = time.perf_counter()
    assert mcqa_sweep(["--preset", "smoke", "--space", str(space), "--study-dir", str(study)]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert time.perf_counter() - started < 2 and not study.exists()  # no trial, no study folder
    assert "--learning-rate must be above 0, got -5.0 (at {'learning_rate': -5, 'lora_r': 4} and 1 more point)" in line
    assert re.search(r"--learning-rate: must be a finite number, got '-inf' \(at \{'learning_rate': -inf", line)

    space.write_text("search:\n  optim: [adamw_torch, sgd_turbo]\n  lora_r: {low: 4, high: 16}\n")
    assert mcqa_sweep(["--preset", "smoke", "--space", str(space), "--study-dir", str(study)]) == 2
    assert "--optim 'sgd_turbo' is not one of" in _one_error_line(capsys.readouterr().err) and not study.exists()
