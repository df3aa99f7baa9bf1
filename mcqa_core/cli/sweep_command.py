"""Sweep training settings: each trial an ordinary training run, ranked by dev-slice accuracy (`mcqa-sweep`).

    # every combination of a grid, on the smoke preset (seconds per trial)
    mcqa-sweep --preset smoke --space sweep.yaml --study-dir sweeps/smoke-lr

    # interrupted? the same command continues: finished trials are kept, an unfinished one runs again
    mcqa-sweep --preset smoke --space sweep.yaml --study-dir sweeps/smoke-lr

    # one study, several workers (one per GPU or machine), any SQL database Optuna speaks
    CUDA_VISIBLE_DEVICES=1 mcqa-sweep --preset course --space sweep.yaml --study-dir sweeps/course \\
        --storage postgresql://user@db/sweeps --trials 24

    # the leaderboard of a sweep's trials (their dev slice is not the reported rows: the board scores those)
    mcqa-eval --leaderboard --adapters-dir sweeps/smoke-lr

Flags after `--` go to every trial's mcqa-train (e.g. `-- --max-steps 4`). Each trial writes
STUDY_DIR/trial-NNN/; the ranking (dev accuracy, each trial's method and what it cost) is printed and kept in
STUDY_DIR/sweep.json, and the best trial's settings are written to STUDY_DIR/best.yaml.

    # every training method on the same rows and steps, side by side (configs/sweep-methods.yaml says why 16-bit)
    mcqa-sweep --preset cpu-demo --space configs/sweep-methods.yaml --study-dir sweeps/methods -- --max-steps 32
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from ..command_line import Parser, add_fields, command
from ..errors import RunError, SettingsError, refuse
from ..setting_fields import setting

STUDY_NAME = "mcqa-sweep"


@dataclass
class SweepArgs:
    preset: str = setting("smoke", "The preset every trial starts from (mcqa-train --help lists them).")
    space: str | None = setting(None, "The YAML file of the grid or search space (docs/training.md).", metavar="FILE")
    study_dir: str | None = setting(
        None, "Where the trials' adapter folders, the study and best.yaml go.", metavar="DIR"
    )
    trials: int | None = setting(None, "Trials to finish in all (default: the grid's size; a search: 8).", min=1)
    storage: str | None = setting(
        None, "Optuna's database URL (default: sqlite:///STUDY_DIR/study.db); one for several workers.", metavar="URL"
    )
    seed: int = setting(0, "The search sampler's seed (TPE).")


def parse_args(argv: list[str] | None):
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    p = Parser(prog="mcqa-sweep", description=__doc__)
    add_fields(p, SweepArgs)
    ours = argv[: argv.index("--")] if "--" in argv else argv
    return SweepArgs(**vars(p.parse_args(ours))), extra


def trial_argv(args: SweepArgs, extra: list[str], params: dict, folder: Path) -> list[str]:
    from ..training.sweep import setting_args

    return ["--preset", args.preset, *extra, *setting_args(params), "--output-dir", str(folder)]


def check(args: SweepArgs, extra: list[str]) -> tuple[str, dict, list[dict]]:
    """The space read, and every grid point (a search: every choice and range bound) checked as mcqa-train checks
    its settings, all before the first trial: every problem at once, each with the first point that has it."""
    from ..training.sweep import check_points, grid_points, read_space

    needed = (("space FILE", args.space), ("study-dir DIR", args.study_dir))
    refuse(SettingsError, "sweep", [f"--{name} is needed" for name, value in needed if not value])
    kind, space = read_space(args.space)
    found: dict[str, list[dict]] = {}
    for params in check_points(kind, space):
        for problem in _point_problems(trial_argv(args, extra, params, Path(args.study_dir) / "check")):
            found.setdefault(problem, []).append(params)
    more = {1: "", 2: " and 1 more point"}
    said = [f"{p} (at {pts[0]}{more.get(len(pts), f' and {len(pts) - 1} more points')})" for p, pts in found.items()]
    refuse(SettingsError, "sweep", said)
    return kind, space, grid_points(space) if kind == "grid" else []


def _point_problems(argv: list[str]) -> list[str]:
    """What mcqa-train would refuse in these settings before it loads anything (its flags' own parse included)."""
    import contextlib
    import io

    from ..training.checks import config_problems
    from ..training.settings import load_config

    said = io.StringIO()
    try:
        with contextlib.redirect_stderr(said):  # a value argparse refuses is printed, then exits
            cfg = load_config(argv, check=config_problems)
    except SettingsError as e:
        return [str(e)]
    except SystemExit:
        return [said.getvalue().strip().removeprefix("error: ").removesuffix(" (see --help)")]
    return config_problems(cfg)


def _suggest(trial, space: dict) -> dict:
    params = {}
    for key, values in space.items():
        if isinstance(values, list):
            params[key] = trial.suggest_categorical(key, values)
        elif all(isinstance(values[k], int) for k in ("low", "high")) and not values.get("log"):
            params[key] = trial.suggest_int(key, values["low"], values["high"])
        else:
            params[key] = trial.suggest_float(key, values["low"], values["high"], log=bool(values.get("log")))
    return params


@command
def main(argv: list[str] | None = None) -> int:
    args, extra = parse_args(argv)
    kind, space, points = check(args, extra)
    import optuna
    from optuna.trial import TrialState

    from ..evaluation.stats import wilson
    from ..models.run_record import read_run
    from ..training.sweep import (
        BEST_FILE,
        STUDY_DB,
        best_settings_yaml,
        dies_with_parent,
        objective_value,
        ranking_table,
        trial_facts,
    )

    root = Path(args.study_dir).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=args.seed)
    study = optuna.create_study(
        study_name=STUDY_NAME,
        storage=args.storage or f"sqlite:///{(root / STUDY_DB).resolve()}",
        direction="maximize",
        sampler=sampler,
        load_if_exists=True,
    )
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if not args.storage:  # a trial a killed sweep left running (a shared database's may be another worker's)
            study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    wanted = args.trials or (len(points) if points else 8)
    if points:
        seen = [t.params for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.WAITING))]
        for params in points:
            if params not in seen and len(seen) < wanted:
                study.enqueue_trial(params)
                seen.append(params)
    todo = max(0, wanted - len(done))
    print(f"[sweep] {len(done)} trial(s) finished, {todo} to run ({kind} over {', '.join(space)})", file=sys.stderr)

    def objective(trial) -> float:
        params = _suggest(trial, space)
        folder = root / f"trial-{trial.number:03d}"
        cmd = [sys.executable, "-m", "mcqa_core.cli.train_command", *trial_argv(args, extra, params, folder)]
        print(f"[sweep] trial {trial.number}: {params} -> {folder}", file=sys.stderr, flush=True)
        if subprocess.run(cmd, preexec_fn=dies_with_parent()).returncode:  # a killed sweep stops its trial too
            raise RunError(f"trial {trial.number} failed (its log is above); fix the settings and run the sweep again")
        run = read_run(folder)
        acc, rows, split = objective_value(run)
        for key, value in {"folder": str(folder), "rows": rows, "split": split, **trial_facts(run)}.items():
            trial.set_user_attr(key, value)
        return acc

    if todo:
        study.optimize(objective, n_trials=todo, catch=())
    ranked = sorted(study.get_trials(states=(TrialState.COMPLETE,)), key=lambda t: -t.value)
    table = [{"number": t.number, "params": t.params, "accuracy": t.value, **t.user_attrs} for t in ranked]
    print(ranking_table(table))
    best = ranked[0]
    rows = best.user_attrs.get("rows", 0)
    facts = {"number": best.number, "accuracy": best.value, "rows": rows, "split": best.user_attrs.get("split"),
             "ci": wilson(round(best.value * rows), rows)}  # fmt: skip
    (root / BEST_FILE).write_text(best_settings_yaml(args.preset, best.params, facts))
    (root / "sweep.json").write_text(json.dumps(table, indent=2))
    print(f"best: trial {best.number} -> {root / BEST_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
