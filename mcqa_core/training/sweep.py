"""A settings sweep: a grid (every combination) or a search space (sampled by Optuna's TPE) over training settings,
each trial an ordinary `mcqa-train` run in its own adapter folder, ranked by its dev-slice accuracy with a Wilson
interval (never by the reported rows), the best trial's settings written out as a settings file.

The space is a YAML file whose keys are setting names, as in every settings file:

    grid:                       # or search:, with {low, high, log} ranges and lists of choices
      learning_rate: [1.0e-3, 3.0e-4]
      lora_r: [8, 16]

Optuna keeps the study in a database (SQLite beside the trials by default, any SQL server with --storage), so an
interrupted sweep continues where it stopped and several workers (one per GPU or machine) share one study.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

from ..errors import SettingsError
from ..evaluation.leaderboard import run_costs
from ..evaluation.stats import wilson
from ..models.tuners import method_of
from ..settings_file import read_settings_file
from .method_costs import COST_HEADERS, cost_cells, cost_text, memory_note
from .settings import field_group

STUDY_DB = "study.db"
BEST_FILE = "best.yaml"


def read_space(path: str | Path) -> tuple[str, dict]:
    """("grid", {setting: [values]}) or ("search", {setting: [choices] | {low, high, log}}), checked: every key a
    setting, every grid a non-empty list, every range low < high. One SettingsError naming what is wrong."""
    origin = f"--space {path}"
    raw = read_settings_file(path, origin)
    kinds = [k for k in ("grid", "search") if k in raw]
    if len(kinds) != 1 or set(raw) - {"grid", "search"} or not isinstance(raw[kinds[0]], dict) or not raw[kinds[0]]:
        raise SettingsError(f"{origin}: a space file holds one mapping, `grid:` or `search:`, of settings to values")
    kind, space = kinds[0], raw[kinds[0]]
    for key, values in space.items():
        if field_group(key)[0] is None:
            raise SettingsError(f"{origin}: {key!r} is not a training setting (mcqa-train --help lists them)")
        if isinstance(values, list) and values:
            continue
        if kind == "search" and isinstance(values, dict) and set(values) <= {"low", "high", "log"}:
            low, high = values.get("low"), values.get("high")
            if isinstance(low, (int, float)) and isinstance(high, (int, float)) and low < high:
                if not values.get("log") or low > 0:
                    continue
        raise SettingsError(
            f"{origin}: {key}: give a non-empty list of values"
            + (" or {low, high, log} with low < high (low > 0 for log)" if kind == "search" else "")
        )
    return kind, space


def dies_with_parent():
    """A Popen preexec_fn that asks Linux to send the child SIGTERM when the sweep dies, even by kill -9: the trainer
    takes SIGTERM as Stop (a checkpoint, then exit) instead of training on alone. None where prctl is not there."""
    import ctypes
    import os
    import signal
    import sys

    if not sys.platform.startswith("linux"):
        return None
    try:  # looked up before the fork: the child only calls it
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(1, signal.SIGTERM)  # 1 is PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the sweep died before the call: the signal will never come
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec


def grid_points(space: dict) -> list[dict]:
    """Every combination of a grid, the first key varying slowest."""
    keys = list(space)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(space[k] for k in keys))]


def check_points(kind: str, space: dict) -> list[dict]:
    """The settings to check before the first trial: every grid point; for a search, every choice and both bounds
    of every range, each with the other settings at their first choice or low bound."""
    if kind == "grid":
        return grid_points(space)
    ends = {k: v if isinstance(v, list) else [v["low"], v["high"]] for k, v in space.items()}
    first = {k: v[0] for k, v in ends.items()}
    points = [{**first, key: value} for key, values in ends.items() for value in values]
    return [p for i, p in enumerate(points) if p not in points[:i]]


def setting_args(params: dict) -> list[str]:
    """A trial's settings as mcqa-train flags (the setting's name is its flag; `--flag=value`, so that a negative
    number is read as the value it is, not as a flag)."""
    out = []
    for key, value in params.items():
        flag = "--" + field_group(key)[1].replace("_", "-")
        if isinstance(value, bool):
            out.append(flag if value else "--no-" + flag[2:])
        else:
            out.append(f"{flag}={','.join(map(str, value)) if isinstance(value, list) else value}")
    return out


def best_settings_yaml(preset: str, params: dict, trial: dict) -> str:
    """The best trial as a settings file: the preset and the sweep's settings in their groups."""
    import yaml

    groups: dict = {}
    for key, value in params.items():
        group, name, _ = field_group(key)
        groups.setdefault(group, {})[name] = value
    head = (
        f"# The best trial of a sweep: trial {trial['number']}, dev-slice accuracy {trial['accuracy']:.1%} "
        f"(95 % interval {trial['ci'][0]:.1%} to {trial['ci'][1]:.1%}) on {trial['rows']} {trial['split']} rows.\n"
        f"# Train with it: mcqa-train --config {BEST_FILE} --output-dir adapters/NAME\n"
    )
    return head + yaml.safe_dump({"preset": preset, **groups}, sort_keys=False)


def objective_value(run: dict) -> tuple[float, int, str]:
    """(dev-slice accuracy, rows, split) from a finished run's record: the evaluation that chose its checkpoint."""
    metrics, data = run.get("metrics") or {}, run.get("data") or {}
    acc = metrics.get("final_accuracy")
    if not isinstance(acc, (int, float)) or math.isnan(acc):
        raise SettingsError("the trial's run recorded no dev-slice accuracy (final_accuracy)")
    return float(acc), int(metrics.get("final_rows") or data.get("eval_rows_used") or 0), str(data.get("eval_split"))


def trial_facts(run: dict) -> dict:
    """What a finished trial's record says besides its accuracy: its method and what the method cost."""
    return {"method": method_of(run), "costs": run_costs(run)}


def ranking_table(trials: list[dict]) -> str:
    """A sweep's trials (best first; sweep.json's entries) as mcqa-sweep prints them: dev accuracy with its
    interval, the method and its costs, the trial's settings."""
    lines = [f"{'trial':>5}  {'dev accuracy (95% interval)':30}{'rows':>6}  {cost_text(COST_HEADERS)}settings"]
    for t in trials:
        rows = t.get("rows", 0)
        ci = wilson(round(t["accuracy"] * rows), rows)
        cells = cost_cells(t.get("method") or "?", t.get("costs"))
        lines.append(
            f"{t['number']:>5}  {t['accuracy']:6.1%} [{ci[0]:.1%}, {ci[1]:.1%}]{'':12}{rows:>6}  {cost_text(cells)}"
            f"{t['params']}"
        )
    if note := memory_note([t.get("costs") for t in trials]):
        lines.append(note)
    return "\n".join(lines)
