"""Every write has one line: a report the disk refuses is kept elsewhere and named, an export the disk refuses leaves
nothing behind, a read-only model cache is named before any slow work, a run whose disk goes read-only ends without a
TensorBoard traceback and with its status settled (or the line says it could not be), and a sweep killed with -9
takes its running trial with it."""

from __future__ import annotations

import errno
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from mcqa_core.cli import eval_command as eval_cli
from mcqa_core.cli import export_command as export_cli
from mcqa_core.cli import train_command as train_cli
from mcqa_core.errors import WriteError
from mcqa_core.training.status_files import read_status

from .conftest import REPO

NO_SPACE = OSError(errno.ENOSPC, "No space left on device")


def _one_error_line(err: str) -> str:
    errors = re.findall(r"error: [^\r\n]*", err)
    assert len(errors) == 1 and "Traceback" not in err and "Exception in thread" not in err, err[-3000:]
    return errors[0]


def _refuse_writes_under(monkeypatch, *folders: Path) -> None:
    """The report's JSON cannot be written in these folders: the disk is full there."""
    from mcqa_core.models import run_record

    real = run_record.write_json_atomic

    def write(path, data):
        if Path(path).parent.resolve() in {f.resolve() for f in folders}:
            raise NO_SPACE
        real(path, data)

    monkeypatch.setattr(run_record, "write_json_atomic", write)


@pytest.fixture
def adapter(tmp_path, tiny_model_path):
    from tests.app_helpers import make_tiny_adapter

    return make_tiny_adapter(tmp_path / "adapter", tiny_model_path)


# --- mcqa-eval --output -----------------------------------------------------------------------------------------


def test_a_report_the_disk_refuses_is_kept_in_the_temp_folder_and_named(
    tmp_path, adapter, data_dir, monkeypatch, capsys
):
    full, temp = tmp_path / "full", tmp_path / "tmp"
    full.mkdir()
    temp.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(temp))
    _refuse_writes_under(monkeypatch, full)
    out = full / "r.json"
    code = eval_cli.main([f"--adapter={adapter}", f"--data-dir={data_dir}", "--limit=8", f"--output={out}"])
    captured = capsys.readouterr()
    line = _one_error_line(captured.err)
    [kept] = temp.glob("r-*.json")
    assert code == 2 and not out.exists()
    assert f"could not be written to {out} (No space left on device); it is kept at {kept}:" in line
    assert f"free space, then move it there: mv {kept} {out}" in line
    report = json.loads(kept.read_text())
    assert report["n"] == 8 and kept.with_suffix(".png").exists()  # the whole report, its chart beside it
    assert "accuracy" in captured.out  # the table was printed before the write


def test_when_every_place_refuses_the_report_the_json_is_printed(tmp_path, monkeypatch, capsys):
    full, temp, reports = tmp_path / "full", tmp_path / "tmp", tmp_path / "reports"
    for folder in (full, temp, reports):
        folder.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(temp))
    monkeypatch.setenv("MCQA_REPORTS_DIR", str(reports))
    report = {"n": 1, "accuracy": 1.0, "per_subject": {}, "meta": {"protocol": {}}}
    monkeypatch.setattr("mcqa_core.evaluation.report.plot_per_subject", lambda r, png: Path(png).write_bytes(b"png"))

    _refuse_writes_under(monkeypatch, full, temp)  # the temp folder is on the same full disk: reports/ next
    with pytest.raises(WriteError, match=r"it is kept at .*reports/r-\w+\.json: free space"):
        eval_cli.save_report(report, full / "r.json")
    assert not list(temp.iterdir())  # no empty file left where the JSON did not fit

    _refuse_writes_under(monkeypatch, full, temp, reports)
    with pytest.raises(WriteError, match="nor to the temp folder or .*; it is printed above as JSON"):
        eval_cli.save_report(report, full / "r.json")
    assert json.loads(capsys.readouterr().out) == report


# --- mcqa-export --out ------------------------------------------------------------------------------------------


def test_an_export_the_disk_refuses_is_one_line_and_leaves_nothing_behind(tmp_path, adapter, monkeypatch, capsys):
    def no_space(folder, record):  # the last files of the folder: the weights are written, half a model is there
        assert (Path(folder) / "model.safetensors").exists()
        raise NO_SPACE

    monkeypatch.setattr("mcqa_core.shipping.merge.write_run", no_space)
    out = tmp_path / "exports" / "merged"
    code = export_cli.main([f"--adapter={adapter}", f"--out={out}", "--check-rows=0"])
    line = _one_error_line(capsys.readouterr().err)
    assert code == 2 and "No space left on device" in line and "nothing was kept there" in line
    assert re.search(rf"free at least \d+ MiB in {re.escape(str(out.parent))}", line), line
    assert list(out.parent.iterdir()) == []  # neither --out nor the folder it was being written in


# --- a read-only model cache ------------------------------------------------------------------------------------


@pytest.fixture
def read_only_cache(tmp_path, monkeypatch):
    """An empty model cache nothing can be written to: a read-only tmpfs where this (root) process may mount one,
    a folder without write permission for anyone else, else a place under /proc."""
    cache = tmp_path / "cache"
    cache.mkdir()
    mounted = False
    if os.geteuid() != 0:
        cache.chmod(0o555)
    else:
        mount = ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(cache)]
        mounted = subprocess.run(mount, capture_output=True).returncode == 0
        cache = cache if mounted else Path("/proc/mcqa-cache")
    monkeypatch.setenv("MCQA_CACHE_DIR", str(cache))
    yield cache
    if mounted:
        subprocess.run(["umount", "-l", str(cache)], check=True)
    elif cache.is_relative_to(tmp_path):
        cache.chmod(0o755)


def test_a_read_only_model_cache_is_named_before_any_slow_work(tmp_path, data_dir, read_only_cache, capsys):
    started = time.perf_counter()
    out = tmp_path / "run"
    argv = ["--preset", "smoke", "--data-dir", str(data_dir), "--output-dir", str(out)]
    assert train_cli.main(argv) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert f"the model cache {read_only_cache} cannot be written" in line
    assert "writable, or set MCQA_CACHE_DIR to a folder you can write to" in line
    assert not out.exists()

    argv = ["--base-model", "tiny-random-llama", "--data-dir", str(data_dir), "--output", str(tmp_path / "r.json")]
    code = eval_cli.main(argv)
    line = _one_error_line(capsys.readouterr().err)
    assert code == 2 and "cannot evaluate: the model cache" in line and "MCQA_CACHE_DIR" in line
    assert time.perf_counter() - started < 20  # no model was converted, no rows scored


# --- a disk that goes read-only while training ------------------------------------------------------------------

DRIVER = """
import errno, sys
from mcqa_core.cli import train_command
from mcqa_core.training import progress, status_files
from tensorboard.summary.writer import record_writer

read_only = []

def gated(real):
    def write(*args, **kwargs):
        if read_only:
            raise OSError(errno.EROFS, "Read-only file system")
        return real(*args, **kwargs)
    return write

real_on_save = progress.ProgressLog.on_save

def on_save(self, *args, **kwargs):  # the disk goes read-only once checkpoint-1 is whole
    real_on_save(self, *args, **kwargs)
    read_only.append(True)

progress.ProgressLog.on_save = on_save
record_writer.RecordWriter.write = gated(record_writer.RecordWriter.write)  # TensorBoard's writer thread
record_writer.RecordWriter.flush = gated(record_writer.RecordWriter.flush)
if sys.argv[1] == "status-too":
    status_files.write_json_atomic = gated(status_files.write_json_atomic)
    train_command.rewrite_in_place = gated(train_command.rewrite_in_place)
sys.exit(train_command.main(sys.argv[2:]))
"""


@pytest.mark.parametrize("status_too", [False, True])
def test_a_disk_gone_read_only_mid_run_is_one_line_and_no_tensorboard_traceback(tmp_path, data_dir, status_too):
    driver = tmp_path / "driver.py"
    driver.write_text(textwrap.dedent(DRIVER))
    out = tmp_path / "run"
    argv = ["--preset", "smoke", "--data-dir", str(data_dir), "--output-dir", str(out), "--max-steps", "3"]
    argv += ["--eval-steps", "1", "--save-steps", "1", "--logging-steps", "1", "--no-report-base"]
    which = "status-too" if status_too else "tensorboard"
    done = subprocess.run([sys.executable, str(driver), which, *argv], cwd=REPO, capture_output=True, text=True)
    line = _one_error_line(done.stderr)
    assert done.returncode == 2 and "Read-only file system" in line
    assert "--resume to continue from checkpoint-1" in line
    status = read_status(out)
    if status_too:
        assert status["state"] == "running" and f"{out / 'status.json'} still says running" in line
    else:
        assert status["state"] == "failed" and "Read-only file system" in status["error"]
        assert "still says running" not in line


# --- a killed sweep ---------------------------------------------------------------------------------------------


def test_a_sweep_killed_with_sigkill_takes_its_running_trial_with_it(tmp_path, data_dir):
    import psutil

    space, study = tmp_path / "space.yaml", tmp_path / "study"
    space.write_text("grid:\n  learning_rate: [1.0e-3]\n")
    argv = ["--preset", "smoke", "--space", str(space), "--study-dir", str(study)]
    argv += ["--", "--data-dir", str(data_dir), "--max-steps", "2000", "--no-report-base"]
    cmd = [sys.executable, "-m", "mcqa_core.cli.sweep_command", *argv]
    proc = subprocess.Popen(cmd, cwd=REPO, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    trials: list = []
    try:
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None:  # the trial trains: its Stop handler is in place
            trials = psutil.Process(proc.pid).children(recursive=True)
            if trials and (read_status(study / "trial-000") or {}).get("state") == "running":
                break
            time.sleep(0.3)
        assert trials and proc.poll() is None, "the sweep never started its trial"
        time.sleep(2)
        os.kill(proc.pid, signal.SIGKILL)  # the sweep alone, not its process group
        proc.wait()
        _, alive = psutil.wait_procs(trials, timeout=60)
        assert not alive, f"the trial outlived its sweep: {alive}"
    finally:
        for p in trials:
            if p.is_running():
                p.kill()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    # SIGTERM reached the trainer as a Stop: it kept a checkpoint of its step and said so
    assert read_status(study / "trial-000")["state"] == "stopped"
