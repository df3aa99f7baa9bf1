"""Comparing the training methods in one command: the shipped sweep space trains every method on the same rows and
step budget (here the smoke preset, one step each) and ranks them beside what each cost; the leaderboard over a
LoRA and a subset folder shows each entry's method and trainable parameters, a base model's as "base"."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import subprocess
from types import SimpleNamespace

import pytest

from mcqa_core.cli import sweep_command, train_command
from mcqa_core.cli.eval_command import main as mcqa_eval
from mcqa_core.models.tuners import METHODS
from mcqa_core.training.checks import config_problems
from mcqa_core.training.method_costs import COST_HEADERS, human
from mcqa_core.training.settings import load_config
from mcqa_core.training.sweep import grid_points, read_space, setting_args

from .conftest import REPO

SPACE = REPO / "configs" / "sweep-methods.yaml"
QUICK = ["--max-steps", "1", "--eval-limit", "8", "--report-limit", "8", "--no-report-base", "--report-to", "none"]


@pytest.fixture(scope="module")
def method_sweep(tmp_path_factory, data_dir):
    """The shipped space on the smoke preset, one step a trial: (study folder, what mcqa-sweep printed). Each trial
    trains in this process: the sweep's subprocess per trial is tests/test_sweep.py's, and here it would spend most
    of the time importing torch five times."""

    def in_process(cmd, *args, **kwargs):
        assert cmd[1:3] == ["-m", "mcqa_core.cli.train_command"], cmd
        return subprocess.CompletedProcess(cmd, train_command.main(cmd[3:]))

    study = tmp_path_factory.mktemp("methods") / "study"
    argv = ["--preset", "smoke", "--space", str(SPACE), "--study-dir", str(study), "--", "--data-dir", str(data_dir)]
    printed = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(printed):
        mp.setattr(sweep_command, "subprocess", SimpleNamespace(run=in_process))
        assert sweep_command.main([*argv, *QUICK]) == 0
    return study, printed.getvalue()


def test_the_method_space_runs_every_method_on_the_same_16_bit_base():
    kind, space = read_space(SPACE)
    points = grid_points(space)
    assert kind == "grid" and [p["peft_method"] for p in points] == list(METHODS)
    for params in points:  # each a valid run on the preset the YAML's comment names, 4-bit refusals included
        cfg = load_config(["--preset", "cpu-demo", *setting_args(params)], check=config_problems)
        assert cfg.method.peft_method == params["peft_method"] and cfg.model.load_in_4bit is False


def test_the_method_sweep_ranks_every_method_beside_its_costs(method_sweep):
    study, printed = method_sweep
    ranked = json.loads((study / "sweep.json").read_text())
    assert sorted(t["method"] for t in ranked) == sorted(METHODS)
    for t in ranked:
        run = json.loads((study / f"trial-{t['number']:03d}" / "mcqa_run.json").read_text())
        assert run["peft_method"] == t["method"] == t["params"]["peft_method"] and run["load_in_4bit"] is False
        assert t["costs"]["trainable_parameters"] == run["costs"]["trainable_parameters"] > 0
        assert run["data"]["train_rows_used"] == 32 and run["settings"]["train"]["max_steps"] == 1  # the same budget
    table = printed[printed.index("trial  dev accuracy") :].splitlines()
    assert all(header in table[0] for header in COST_HEADERS)
    rows = {line.split()[0]: line for line in table[1 : 1 + len(METHODS)]}
    for t in ranked:
        line = rows[str(t["number"])]
        assert f"  {t['method']}  " in line and human(t["costs"]["trainable_parameters"], "") in line
    full = next(t for t in ranked if t["method"] == "full")
    assert full["costs"]["trainable_share"] == 1.0 and all(
        t["costs"]["trainable_share"] < 0.05 for t in ranked if t is not full
    )


def test_the_leaderboard_shows_each_adapters_method_and_trainable_parameters(method_sweep, data_dir, tmp_path, capsys):
    study, _ = method_sweep
    ranked = {t["method"]: t for t in json.loads((study / "sweep.json").read_text())}
    adapters = tmp_path / "adapters"
    for method in ("lora", "subset"):
        shutil.copytree(ranked[method]["folder"], adapters / method)
    out = tmp_path / "board"
    argv = ["--leaderboard", "--adapters-dir", str(adapters), "--data-dir", str(data_dir), "--limit", "8"]
    assert mcqa_eval([*argv, "--output", str(out)]) == 0
    board = json.loads((out / "leaderboard.json").read_text())
    entries = {e["name"]: e for e in board["entries"]}
    assert {n: e["method"] for n, e in entries.items()} == {
        "lora": "lora", "subset": "subset", "base tiny-random-llama": "base"}  # fmt: skip
    assert board["differing_settings"] == ["method.peft_method"]  # the same rows, steps and base otherwise
    for method in ("lora", "subset"):
        assert entries[method]["costs"] == ranked[method]["costs"]
    assert entries["base tiny-random-llama"]["costs"] is None
    assert entries["subset"]["costs"]["trainable_parameters"] > entries["lora"]["costs"]["trainable_parameters"]
    printed = capsys.readouterr().out.splitlines()
    assert all(header in printed[0] for header in COST_HEADERS)
    line = {ln.split()[1]: ln for ln in printed[1:4]}
    for method in ("lora", "subset"):
        costs = entries[method]["costs"]
        count = f"{human(costs['trainable_parameters'], '')} ({costs['trainable_share']:.2%})"
        assert f"  {method}  " in line[method] and count in line[method]
    assert line["base"].split()[-1] == "base"  # a base model: its method, no costs

    from app_ui.leaderboard_view import ranking_with_costs  # the app's ranking: the same columns, as numbers

    shown = {r["model"]: r for r in ranking_with_costs(board)}
    assert list(shown["lora"])[:3] == ["rank", "model", "method"] and "peft_method" not in shown["lora"]
    assert shown["subset"]["trainable parameters"] == entries["subset"]["costs"]["trainable_parameters"]
    assert shown["base tiny-random-llama"]["method"] == "base" and shown["base tiny-random-llama"]["saved"] is None
