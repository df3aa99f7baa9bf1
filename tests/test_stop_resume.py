"""Stop (a real SIGTERM, as the Train page sends it) mid-run on a preset that keeps one checkpoint and loads
the best model at the end: the stop checkpoint survives, --resume continues at the stop step with no step
lost or repeated, progress times carry over, and a newest checkpoint cut short by a kill is skipped."""

from __future__ import annotations

import itertools
import os
import shutil
import signal

import pytest

from mcqa_core.training import status_files
from mcqa_core.training.output_folder import checkpoints
from mcqa_core.training.run import run_training
from mcqa_core.training.settings import load_config
from mcqa_core.training.status_files import read_progress, read_status

ROTATING = ["--eval-steps", "3", "--save-steps", "3", "--logging-steps", "1", "--save-total-limit", "1"]


def _smoke(out, data_dir, *flags):
    return load_config(["--preset", "smoke", "--data-dir", str(data_dir), "--output-dir", str(out), *flags])


@pytest.fixture()
def sigterm_during_step(monkeypatch):
    """sigterm_during_step(n): this process gets a real SIGTERM while it computes optimizer step n."""
    from mcqa_core.training.trainer import MCQATrainer

    previous = signal.getsignal(signal.SIGTERM)
    pending = {}
    real = MCQATrainer.training_step

    def training_step(self, *args, **kwargs):
        if pending.get("step") == self.state.global_step + 1:
            del pending["step"]
            os.kill(os.getpid(), signal.SIGTERM)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(MCQATrainer, "training_step", training_step)
    yield lambda step: pending.update(step=step)
    signal.signal(signal.SIGTERM, previous)
    status_files._STOP["requested"] = False


@pytest.fixture()
def newest_eval_is_best(monkeypatch):
    """Each evaluation scores above the last, so the best checkpoint is always an earlier one than the stop
    checkpoint (the case where transformers' end-of-training clean-up deleted it)."""
    from mcqa_core.training import trainer

    rising = itertools.count(1)
    monkeypatch.setattr(trainer, "accuracy", lambda scores: next(rising) / 100)


def test_sigterm_mid_run_keeps_its_checkpoint_and_resume_continues_at_the_stop_step(
    tmp_path, data_dir, sigterm_during_step, newest_eval_is_best
):
    out = tmp_path / "run"
    cfg = _smoke(out, data_dir, "--max-steps", "12", *ROTATING)
    assert cfg.train.save_total_limit == 1 and cfg.train.relora_steps is None  # best-model loading is on
    sigterm_during_step(8)
    record = run_training(cfg)

    assert record["stopped"] and record["metrics"]["global_steps"] == 8
    complete, _ = checkpoints(out)
    assert [c.name for c in complete] == ["checkpoint-6", "checkpoint-8"]  # the best and the stop checkpoint
    assert read_status(out)["state"] == "stopped" and read_status(out)["step"] == 8
    stopped_at = read_progress(out)[-1]
    assert stopped_at["step"] == 8

    record = run_training(_smoke(out, data_dir, "--max-steps", "12", *ROTATING, "--resume"))
    assert record["metrics"]["global_steps"] == 12
    assert [h["step"] for h in record["metrics"]["history"] if "loss" in h] == list(range(1, 13))
    progress = read_progress(out)
    assert [r["step"] for r in progress if r["event"] == "log"] == list(range(1, 13))
    assert [r["step"] for r in progress if r["event"] == "eval"] == [0, 3, 6, 9, 12]
    assert [r["step"] for r in progress if r["event"] == "begin"] == [0, 8]  # resumed at the stop step
    times = [r["time"] for r in progress]
    assert times == sorted(times) and times[-1] > stopped_at["time"]  # elapsed carries over, never goes back


def test_a_newest_checkpoint_cut_short_by_a_kill_is_skipped_on_resume(tmp_path, data_dir, sigterm_during_step):
    out = tmp_path / "run"
    sigterm_during_step(2)
    assert run_training(_smoke(out, data_dir, "--max-steps", "6", *ROTATING))["metrics"]["global_steps"] == 2
    # What a kill during the next save leaves: every file written, trainer_state.json (written last) cut short.
    (stop,), _ = checkpoints(out)
    cut = shutil.copytree(stop, stop.with_name("checkpoint-3"))
    state = (cut / "trainer_state.json").read_text()
    (cut / "trainer_state.json").write_text(state[: len(state) // 2])

    record = run_training(_smoke(out, data_dir, "--max-steps", "6", *ROTATING, "--resume"))
    assert [r["step"] for r in read_progress(out) if r["event"] == "begin"] == [0, 2]
    assert [h["step"] for h in record["metrics"]["history"] if "loss" in h] == list(range(1, 7))
    assert any(p.name.startswith(".incomplete-checkpoint-3-") for p in (out / "checkpoints").iterdir())


def test_a_stop_mid_step_lands_after_one_micro_batch_and_resume_runs_that_step_whole(tmp_path, data_dir, monkeypatch):
    """Four micro-batches a step: a SIGTERM during step 3's first micro-batch ends the run after that micro-batch,
    with a checkpoint of step 2 (the last optimizer step); --resume trains steps 3 to 6."""
    from mcqa_core.training.trainer import MCQATrainer

    out, calls = tmp_path / "run", []
    real = MCQATrainer.training_step

    def training_step(self, *args, **kwargs):
        calls.append(self.state.global_step)
        if len(calls) == 9:  # step 3's first micro-batch
            os.kill(os.getpid(), signal.SIGTERM)
        return real(self, *args, **kwargs)

    previous = signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr(MCQATrainer, "training_step", training_step)
    flags = ["--max-steps", "6", "--per-device-train-batch-size", "2", "--gradient-accumulation-steps", "4", *ROTATING]
    try:
        record = run_training(_smoke(out, data_dir, *flags))
    finally:
        signal.signal(signal.SIGTERM, previous)
        status_files._STOP["requested"] = False
    assert len(calls) == 9  # no micro-batch after the one the signal came in
    assert record["stopped"] and record["metrics"]["global_steps"] == 2
    assert read_status(out)["state"] == "stopped" and "checkpoint-2" in [c.name for c in checkpoints(out)[0]]
    monkeypatch.setattr(MCQATrainer, "training_step", real)
    record = run_training(_smoke(out, data_dir, *flags, "--resume"))
    assert record["metrics"]["global_steps"] == 6
    assert [h["step"] for h in record["metrics"]["history"] if "loss" in h] == list(range(1, 7))
