"""Training from the app: the Train page starts `train_adapter.py` as its own process and follows it through
its files; stop, resume, a stale lock and a failing run, with the real smoke preset."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from mcqa_core.service import train_launcher as runs
from mcqa_core.training.output_folder import checkpoints

from . import test_app
from .test_app import open_app, picker_entries, shown

app_env = test_app.app_env  # the same app settings, autouse here too


def _wait(out: Path, adapters: Path, states=("done",), timeout=240) -> runs.RunView:
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = runs.view(out, adapters)
        if v.state in states:
            return v
        time.sleep(1)
    raise AssertionError(f"{out} did not reach {states}: {runs.view(out, adapters)}")


def test_start_a_smoke_run_from_the_page_watch_it_and_ask_the_new_adapter(app_env):
    at = open_app("train")
    assert "--preset smoke" in shown(at)  # the command line it will run
    at.text_input(key="train_name_smoke").set_value("from-the-page")
    at.button(key="train_start").click().run()
    assert not at.exception
    out = app_env / "from-the-page"
    view = _wait(out, app_env)
    assert len(view.losses) >= 3 and len(view.evals) >= 2 and view.base_accuracy is not None
    at = open_app("train")
    bars = [p.proto.text for p in at.get("progress")]
    assert any(b.startswith("from\\-the\\-page: done, step 6 of 6") for b in bars), bars
    assert any("Done: the adapter is in the sidebar" in s.value for s in at.success), shown(at)
    assert any(o.startswith("from-the-page (smoke run on ") for o in picker_entries(at))  # ready to ask
    assert "Past runs (1)" in [
        h.value for h in at.subheader
    ]  # the history: settings, accuracy with its interval, TensorBoard
    past = next(d.value for d in at.dataframe if "accuracy" in d.value.columns).iloc[0]
    assert past["name"] == "from-the-page" and at.selectbox(key="train_history_pick").value == "from-the-page"
    assert "95 % interval" in past["accuracy"] and past["measured on"].endswith("heldout rows")
    picked = next(t.value["value"] for t in at.table if "wall time" in t.value.index)  # its settings, below
    assert picked["preset"] == "smoke" and float(picked["learning_rate"]) > 0
    assert any("tensorboard --logdir" in c.value and "from-the-page" in c.value for c in at.code)


def test_stop_saves_a_checkpoint_and_resume_loses_no_step(app_env, data_dir):
    out = app_env / "long"
    runs.start(
        [
            "--preset",
            "smoke",
            "--output-dir",
            str(out),
            "--max-steps",
            "40",
            "--eval-steps",
            "5",
            "--save-steps",
            "5",
            "--data-dir",
            str(data_dir),
        ],
        app_env,
    )
    deadline = time.time() + 180
    while runs.view(out, app_env).step < 3 and time.time() < deadline:
        time.sleep(0.5)
    at = open_app("train")
    at.button(key="train_stop").click().run()
    view = _wait(out, app_env, states=("stopped",))
    complete, _ = checkpoints(out)
    assert complete and view.step < 40 and not (out / "mcqa_run.json").exists()
    at = open_app("train")
    assert f"Stopped at step {view.step} with {complete[-1].name}" in shown(at)
    assert complete[-1].name == f"checkpoint-{view.step}"  # Stop itself saved: nothing to compute again
    assert not any("left" in p.proto.text for p in at.get("progress"))  # no ETA for a run that is not training
    at.button(key="train_resume").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    _wait(out, app_env)
    record = json.loads((out / "mcqa_run.json").read_text())
    assert [h["step"] for h in record["metrics"]["history"] if "loss" in h] == list(range(1, 41))


def test_a_stale_lock_from_a_dead_process_is_cleared(app_env):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    lock = app_env / runs.LOCK_FILE
    lock.write_text(json.dumps({"pid": int(dead.stdout), "output_dir": str(app_env / "ghost")}))
    assert runs.active_run(app_env) is None and not lock.exists()
    at = open_app("train")
    assert at.button(key="train_start") is not None  # the form, not a run that is not there


def test_a_lock_whose_pid_another_process_has_now_is_a_dead_run_that_stop_never_signals(app_env):
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        started = psutil.Process(other.pid).create_time()
        out = app_env / "reused"
        out.mkdir()
        # What a run that died leaves once the system has given its pid to an unrelated process.
        (out / runs.LAUNCH_FILE).write_text(json.dumps({"argv": []}))
        (out / "status.json").write_text(
            json.dumps({"state": "running", "pid": other.pid, "pid_started": started - 600})
        )
        lock = app_env / runs.LOCK_FILE
        lock.write_text(json.dumps({"pid": other.pid, "pid_started": started - 600, "output_dir": str(out)}))
        assert not runs.stop(app_env) and not lock.exists()
        at = open_app("train")
        assert "train_stop" not in [b.key for b in at.button] and at.button(key="train_start") is not None
        assert any(p.proto.text.startswith("reused: failed") for p in at.get("progress"))
        assert other.poll() is None  # still alive: never signalled
        # The same pid with its own start time is the run the lock recorded: Stop reaches it.
        lock.write_text(json.dumps({"pid": other.pid, "pid_started": started, "output_dir": str(out)}))
        assert runs.active_run(app_env) is not None and runs.stop(app_env)
        assert other.wait(timeout=10) == -signal.SIGTERM
    finally:
        other.kill()
        other.wait()


def test_an_eta_only_while_training_at_the_pace_of_the_whole_run(tmp_path):
    running = runs.RunView(tmp_path, "running", step=24, max_steps=60, elapsed=48.0)
    assert running.remaining == pytest.approx(72.0)
    for state in ("stopped", "failed", "done", "starting"):
        assert runs.RunView(tmp_path, state, step=24, max_steps=60, elapsed=48.0).remaining is None


def test_a_run_that_fails_says_failed_with_its_reason(app_env, tmp_path):
    out = app_env / "bad-data"
    runs.start(["--preset", "smoke", "--output-dir", str(out), "--data-dir", str(tmp_path / "no-data")], app_env)
    view = _wait(out, app_env, states=("failed",))
    assert "data folder" in view.error and "does not exist" in view.error
    at = open_app("train")
    assert any("The run failed: data folder" in e.value for e in at.error)


def test_settings_that_cannot_run_are_refused_before_a_process_starts(app_env):
    with pytest.raises(Exception, match="--learning-rate must be above 0"):
        runs.start(["--preset", "smoke", "--output-dir", str(app_env / "x"), "--learning-rate", "-1"], app_env)
    assert not (app_env / "x").exists() and runs.active_run(app_env) is None


def test_the_log_panel_shows_clean_text():
    text = "loading\n\x1b[32mok\x1b[0m\r\n 10%|█   | 1/10\r 50%|█████ | 5/10\r100%|██████████| 10/10\n"
    assert runs.clean_log(text) == ["loading", "ok", "100%|██████████| 10/10", ""]


def test_after_the_last_step_the_page_shows_the_report_phase_with_its_own_bar_and_no_start_form(app_env):
    """A live run (this test's own process stands in for the trainer) that is scoring its report's rows."""
    import os

    from mcqa_core.models.run_record import write_json_atomic
    from mcqa_core.training.status_files import process_started, write_status

    out = app_env / "reporting"
    out.mkdir()
    (out / runs.LAUNCH_FILE).write_text(json.dumps({"argv": []}))
    (out / "progress.jsonl").write_text(json.dumps({"event": "log", "step": 8, "max_steps": 8, "loss": 1.0}) + "\n")
    write_status(out, "running", phase="report", done=312, total=2148, step=8)
    held = {"pid": os.getpid(), "pid_started": process_started(os.getpid()), "output_dir": str(out)}
    write_json_atomic(app_env / runs.LOCK_FILE, held)
    at = open_app("train")
    bars = [p.proto.text for p in at.get("progress")]
    assert any("scoring the report's questions, 312 of 2148" in b for b in bars), bars
    assert not any("left" in b or "step 8 of 8" in b for b in bars)  # not a full bar that sits still
    assert "train_start" not in [b.key for b in at.button]  # no second start form while a run is live
    (app_env / runs.LOCK_FILE).unlink()
    write_status(out, "done", step=8)
    assert "train_start" in [b.key for b in open_app("train").button]  # ended: the form is back


def test_the_learning_rate_steps_both_ways_in_halves_and_decades(app_env):
    at = open_app("train")
    lr = at.select_slider(key="train_lr_smoke")
    rates = list(lr.options)
    at_index = rates.index(f"{lr.value:.0e}".replace("e-0", "e-"))
    assert 0 < at_index < len(rates) - 1  # a step down and a step up
    assert {"1e-4", "2e-4", "5e-4", "1e-3"} <= set(rates)


def test_an_export_started_from_the_page_writes_what_mcqa_export_writes(app_env, tiny_model_path, data_dir):
    from mcqa_core.cli.export_command import main as mcqa_export
    from mcqa_core.service import export_launcher as exports

    from .app_helpers import make_tiny_adapter

    adapter = make_tiny_adapter(app_env / "tiny-lora", tiny_model_path)
    record = json.loads((adapter / "mcqa_run.json").read_text())
    record["data"]["source"] = str(data_dir)  # the folder it "trained" from: the agreement check reads it
    (adapter / "mcqa_run.json").write_text(json.dumps(record))
    at = open_app("train")
    assert at.selectbox(key="train_history_pick").value == "tiny-lora"
    fmt = at.radio(key="export_format").value
    shown_command = next(c.value for c in at.code if c.value.startswith(".venv/bin/mcqa-export"))
    at.button(key="export_start").click().run()
    folder = exports.exports_dir(app_env)
    deadline = time.time() + 240
    while (v := exports.export_view(folder)) is not None and v.state == "running" and time.time() < deadline:
        time.sleep(1)
    assert v is not None and v.state == "done", v and v.log_tail
    assert shown_command.split("--out")[0] in (folder / f"{v.out.name}.log").read_text()  # the command it showed
    assert "Exported into" in shown(open_app("train"))
    by_hand = app_env.parent / "by-hand"
    assert mcqa_export(exports.export_argv(adapter, by_hand, fmt)) == 0
    assert sorted(p.name for p in v.out.iterdir()) == sorted(p.name for p in by_hand.iterdir())
    assert "model.safetensors" in {p.name for p in by_hand.iterdir()}


def test_the_waits_before_the_first_step_are_named(app_env):
    """loading, then the step-0 check, then training: what the bar says before a step's loss exists."""
    import os

    from mcqa_core.training.status_files import PROGRESS_FILE, process_started, write_status

    out, adapters = app_env / "run", app_env
    write_status(out, "running")
    lock = {"pid": os.getpid(), "pid_started": process_started(os.getpid()), "output_dir": str(out)}
    (adapters / runs.LOCK_FILE).write_text(json.dumps(lock))  # this test's process stands in for the trainer
    assert runs.view(out, adapters).phase == "loading"
    with (out / PROGRESS_FILE).open("a") as f:
        f.write(json.dumps({"event": "begin", "step": 0, "max_steps": 6, "time": 0.1}) + "\n")
    assert runs.view(out, adapters).phase == "step-0 check"
    with (out / PROGRESS_FILE).open("a") as f:
        f.write(json.dumps({"event": "eval", "step": 0, "max_steps": 6, "accuracy": 0.25, "time": 1.0}) + "\n")
    assert runs.view(out, adapters).phase == "train"
    at = open_app("train")  # one evaluation: said in words, not an empty chart with a "0.000000" axis
    assert "25.0% on the dev rows (the base model, before the first step)" in shown(at)
    assert not any(c.key == "train_start" for c in at.button)  # a run is live: no second start form
    write_status(out, "running", phase="report", done=3, total=32)
    assert (runs.view(out, adapters).phase, runs.view(out, adapters).phase_done) == ("report", 3)


def test_progress_moves_at_every_step_whatever_logging_steps_says(tmp_path, data_dir):
    from mcqa_core.service.train_launcher import view
    from mcqa_core.training.run import run_training
    from mcqa_core.training.settings import load_config
    from mcqa_core.training.status_files import read_progress

    out = tmp_path / "adapters" / "every-step"
    flags = ["--preset", "smoke", "--data-dir", str(data_dir), "--output-dir", str(out), "--max-steps", "3",
             "--logging-steps", "100", "--eval-steps", "3", "--save-steps", "3", "--report-limit", "4"]  # fmt: skip
    run_training(load_config(flags))
    records = read_progress(out)
    assert [r["step"] for r in records if r["event"] == "step"] == [1, 2, 3]
    assert not [r for r in records if r["event"] == "log"]  # the loss is still logged at logging_steps only
    assert view(out, out.parent).step == 3


@pytest.mark.parametrize("content", ["[]", "null", '"a string"', "5", "{}", '{"output_dir": 5, "pid": 1}', "{trunc"])
def test_any_lock_content_draws_the_page_with_its_start_form(app_env, content):
    (app_env / runs.LOCK_FILE).write_text(content)
    assert runs.active_run(app_env) is None
    at = open_app("train")
    assert not at.exception and at.button(key="train_start") is not None


def test_a_lock_that_is_a_folder_is_refused_before_a_run_starts(app_env):
    (app_env / runs.LOCK_FILE).mkdir()
    at = open_app("train")
    assert not at.exception and runs.active_run(app_env) is None
    with pytest.raises(runs.RunError, match="is not a file"):
        runs.start(["--preset", "smoke", "--output-dir", str(app_env / "x")], app_env)
    assert not (app_env / "x").exists()  # nothing started, nothing written


def test_a_damaged_lock_beside_a_live_run_still_finds_that_run_and_offers_stop(app_env):
    """The page's lock is truncated while a run trains: the run's own folder lock (flock) names it."""
    out = app_env / "live"
    out.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom mcqa_core.training.output_folder import hold_output_dir\n"
         "from pathlib import Path\nhold_output_dir(Path(sys.argv[1]))\nprint('held', flush=True)\ntime.sleep(60)",
         str(out)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        (app_env / runs.LOCK_FILE).write_text('{"pid": ')  # truncated mid-write
        held = runs.active_run(app_env)
        assert held is not None and held["pid"] == holder.pid and Path(held["output_dir"]) == out
        at = open_app("train")
        assert not at.exception and "train_stop" in [b.key for b in at.button]
        assert "train_start" not in [b.key for b in at.button]  # no second run beside it
    finally:
        holder.kill()
        holder.wait()


def test_gguf_is_offered_with_what_this_machine_can_do_and_a_failure_shows_its_whole_line(
    app_env, tiny_model_path, monkeypatch
):
    from mcqa_core.service import export_launcher as exports
    from mcqa_core.shipping import llama_cpp

    from .app_helpers import make_tiny_adapter

    make_tiny_adapter(app_env / "tiny-lora", tiny_model_path)
    gguf = next(f for f in exports.EXPORT_FORMATS if "gguf" in exports.EXPORT_FORMATS[f])
    monkeypatch.setattr(llama_cpp, "server_binary", lambda: None)  # `make app`: the converter, no llama-server
    monkeypatch.setattr(llama_cpp, "converter", lambda: Path("convert_hf_to_gguf.py"))
    argv = exports.export_argv(Path("a"), Path("o"), gguf)
    assert argv[argv.index("--check-rows") + 1] == "0"  # exported, its letters not checked here
    assert exports.export_argv(Path("a"), Path("o"), next(iter(exports.EXPORT_FORMATS)))[5] == str(exports.CHECK_ROWS)
    at = open_app("train")
    at.radio(key="export_format").set_value(gguf).run()
    assert "not checked against the adapter's here" in shown(at)
    monkeypatch.setattr(llama_cpp, "converter", lambda: None)  # no converter: GGUF is not offered, and why
    at = open_app("train")
    assert not any("GGUF" in o for o in at.radio(key="export_format").options)
    assert "GGUF needs llama" in shown(at)  # the line (markdown-escaped) says what is missing
    log = ["[merge] ...", "error: the disk is full while writing model.safetensors; free 300 MB and export again"]
    assert exports.failure_line(log) == log[-1][len("error: ") :]
