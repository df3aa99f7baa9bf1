"""mcqa-sweep: a grid of smoke runs, each an ordinary training run, ranked by dev-slice accuracy; killed after two
trials and started again, it finishes the other two only; bad spaces are one line before any training."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from mcqa_core.cli.sweep_command import STUDY_NAME
from mcqa_core.cli.sweep_command import main as mcqa_sweep
from mcqa_core.errors import SettingsError
from mcqa_core.training.settings import load_config
from mcqa_core.training.sweep import grid_points, read_space, setting_args

from .conftest import REPO

GRID = "grid:\n  learning_rate: [1.0e-3, 3.0e-4]\n  lora_r: [4, 8]\n"


def completed(study_dir):
    import optuna
    from optuna.trial import TrialState

    study = optuna.load_study(study_name=STUDY_NAME, storage=f"sqlite:///{study_dir / 'study.db'}")
    return study.get_trials(states=(TrialState.COMPLETE,))


def completed_so_far(study_dir) -> int:
    """Trials completed while the sweep runs. Read only once the first trial's folder exists: before that the
    database may be a file without its tables or its study, and a reader would race the sweep to create them."""
    from sqlalchemy.exc import OperationalError

    if not (study_dir / "trial-000").exists():
        return 0
    try:
        return len(completed(study_dir))
    except OperationalError:  # locked by the sweep's own write: read again next time
        return 0


@pytest.mark.parametrize(
    "text,words",
    [
        ("grid:\n  colour: [red]\n", "'colour' is not a training setting"),
        ("grid:\n  learning_rate: []\n", "learning_rate: give a non-empty list of values"),
        ("search:\n  learning_rate: {low: 1.0e-3, high: 1.0e-4}\n", "with low < high"),
        ("grid: {}\n", "one mapping, `grid:` or `search:`"),
    ],
)
def test_a_bad_space_is_one_line_before_any_trial(tmp_path, capsys, text, words):
    space = tmp_path / "space.yaml"
    space.write_text(text)
    with pytest.raises(SettingsError, match=words.replace("(", r"\(").replace("[", r"\[")):
        read_space(space)
    assert mcqa_sweep(["--space", str(space), "--study-dir", str(tmp_path / "s")]) == 2
    assert words in capsys.readouterr().err and not (tmp_path / "s").exists()


def test_grid_points_become_ordinary_mcqa_train_flags(tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text(GRID + "  use_rslora: [false]\n")
    kind, values = read_space(space)
    points = grid_points(values)
    assert (
        kind == "grid" and len(points) == 4 and points[2] == {"learning_rate": 3e-4, "lora_r": 4, "use_rslora": False}
    )
    cfg = load_config(["--preset", "smoke", *setting_args(points[2])])
    assert (cfg.train.learning_rate, cfg.lora.lora_r, cfg.lora.use_rslora) == (3e-4, 4, False)


def test_a_killed_sweep_finishes_the_other_trials_only(tmp_path, data_dir, capsys):
    space, study = tmp_path / "space.yaml", tmp_path / "study"
    space.write_text(GRID)
    argv = ["--preset", "smoke", "--space", str(space), "--study-dir", str(study)]
    argv += ["--", "--data-dir", str(data_dir), "--max-steps", "2", "--no-report-base"]
    cmd = [sys.executable, "-m", "mcqa_core.cli.sweep_command", *argv]
    proc = subprocess.Popen(cmd, cwd=REPO, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 600
        while time.time() < deadline and proc.poll() is None:
            if completed_so_far(study) >= 2:
                break
            time.sleep(0.3)
        os.killpg(proc.pid, signal.SIGKILL)  # the sweep and the trial it may have started
    finally:
        proc.wait()
    first = {t.number: t.params for t in completed(study)}
    assert len(first) == 2, "the sweep did not finish two trials before it was killed"
    kept = {n: (study / f"trial-{n:03d}" / "mcqa_run.json").stat().st_mtime_ns for n in first}
    assert mcqa_sweep(argv) == 0
    err = capsys.readouterr()
    assert "[sweep] 2 trial(s) finished, 2 to run" in err.err
    assert err.err.count("[sweep] trial ") == 2  # the other two grid points, nothing else
    done = completed(study)
    assert len(done) == 4 and sorted(map(repr, (t.params for t in done))) == sorted(
        map(repr, grid_points(read_space(space)[1]))
    )  # every grid point once
    assert {n: (study / f"trial-{n:03d}" / "mcqa_run.json").stat().st_mtime_ns for n in first} == kept
    ranked = json.loads((study / "sweep.json").read_text())
    assert [t["accuracy"] for t in ranked] == sorted((t["accuracy"] for t in ranked), reverse=True)
    assert all(t["split"] == "demo-dev" for t in ranked)  # the dev slice, never the reported rows
    best = load_config(["--config", str(study / "best.yaml")])
    assert (
        best.preset == "smoke"
        and {"learning_rate": best.train.learning_rate, "lora_r": best.lora.lora_r} == ranked[0]["params"]
    )
    assert "dev accuracy (95% interval)" in err.out


def test_the_shipped_sweep_space_reads_and_every_point_is_a_valid_run():
    kind, space = read_space(REPO / "configs" / "sweep-lr-rank.yaml")
    assert kind == "grid" and len(grid_points(space)) == 4
    for params in grid_points(space):
        load_config(["--preset", "smoke", *setting_args(params)])
