"""Presets are files that agree with the built-in defaults and the README's course recipe; settings are read
when a run starts (never frozen at import); every command refuses bad input in one line, exit code 2."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys

import pytest

from mcqa_core.errors import DataError, SettingsError
from mcqa_core.training.settings import (
    PRESETS_DIR,
    RunConfig,
    apply_settings,
    load_config,
    preset_names,
    read_settings_file,
)

from .conftest import REPO


def _recipe_paragraph() -> str:
    text = (REPO / "README.md").read_text()
    match = re.search(r"^## The course recipe\n+(.+?)(?:\n\n|\Z)", text, flags=re.M | re.S)
    assert match, "README.md lost its '## The course recipe' section"
    return " ".join(match.group(1).split())


def test_presets_are_the_three_files():
    assert preset_names() == ["course", "cpu-demo", "smoke"]


def test_course_file_defaults_and_readme_recipe_agree():
    defaults = RunConfig()
    from_file = RunConfig()
    course = read_settings_file(PRESETS_DIR / "course.yaml", "course")
    apply_settings(from_file, course, "course.yaml")
    assert from_file == defaults  # the file sets exactly the defaults
    assert load_config([]) == load_config(["--preset", "course"]) == defaults
    # ...and spells out the whole recipe (a reader should not need the Python defaults)
    spelled = {k for group in course.values() for k in group}
    assert {
        "model_name",
        "load_in_4bit",
        "lora_r",
        "lora_alpha",
        "lora_dropout",
        "use_rslora",
        "target_modules",
        "gradient_checkpointing",
        "random_state",
        "learning_rate",
        "lr_scheduler_type",
        "warmup_steps",
        "per_device_train_batch_size",
        "gradient_accumulation_steps",
        "num_train_epochs",
        "eval_steps",
        "save_steps",
        "logging_steps",
        "save_total_limit",
        "optim",
        "weight_decay",
        "seed",
    } <= spelled

    text, m, lo, t = _recipe_paragraph(), defaults.model, defaults.lora, defaults.train
    readme = {
        "r": r"LoRA r=(\d+)",
        "alpha": r"alpha=(\d+)",
        "dropout": r"dropout (\d+(?:\.\d+)?)",
        "random_state": r"random_state (\d+)",
        "lr": r"lr (\S+) (\w+)",
        "warmup": r"warm-up (\d+)",
        "batch": r"batch (\d+) x accumulation (\d+)",
        "epochs": r"(\d+) epochs",
        "every": r"every (\d+) steps",
        "kept": r"(\d+) checkpoint kept",
        "optim": r"(adamw_8bit|adamw_torch)",
        "wd": r"weight decay (\S+?),",
        "seed": r"seed (\d+)",
        "targets": r"rsLoRA on ([a-z,]+)",
    }
    got = {}
    for key, pattern in readme.items():
        found = re.search(pattern, text)
        assert found, f"the README's recipe no longer says {key} ({pattern})"
        got[key] = found.groups()
    assert int(got["r"][0]) == lo.lora_r and int(got["alpha"][0]) == lo.lora_alpha
    assert float(got["dropout"][0]) == lo.lora_dropout
    assert lo.use_rslora and lo.gradient_checkpointing and "gradient checkpointing" in text
    assert int(got["random_state"][0]) == lo.random_state
    assert [f"{x}_proj" for x in got["targets"][0].strip(",").split(",")] == lo.target_modules
    assert float(got["lr"][0]) == t.learning_rate and got["lr"][1] == t.lr_scheduler_type
    assert int(got["warmup"][0]) == t.warmup_steps
    assert (int(got["batch"][0]), int(got["batch"][1])) == (
        t.per_device_train_batch_size,
        t.gradient_accumulation_steps,
    )
    assert float(got["epochs"][0]) == t.num_train_epochs
    assert int(got["every"][0]) == t.eval_steps == t.save_steps == t.logging_steps
    assert int(got["kept"][0]) == t.save_total_limit and got["optim"][0] == t.optim
    assert float(got["wd"][0]) == t.weight_decay and int(got["seed"][0]) == t.seed
    assert m.model_name in (REPO / "README.md").read_text() and m.load_in_4bit and m.max_seq_length == 512


@pytest.mark.parametrize("name", ["cpu-demo", "smoke"])
def test_offline_presets_find_local_data_when_the_run_starts(name, monkeypatch, tmp_path):
    from mcqa_core.data import medmcqa as rows

    cfg = load_config(["--preset", name])
    assert cfg.data.data_dir == rows.LOCAL  # not a path frozen when a module was imported
    monkeypatch.setenv("MCQA_DATA_DIR", str(tmp_path))
    assert rows.resolve_data_dir(cfg.data.data_dir) == str(tmp_path)
    monkeypatch.delenv("MCQA_DATA_DIR")
    monkeypatch.setattr(rows, "SHARED_DATA_DIR", tmp_path / "nowhere")
    with pytest.raises(DataError, match="no local MedMCQA rows: set MCQA_DATA_DIR or pass --data-dir"):
        rows.resolve_data_dir(cfg.data.data_dir)
    assert rows.resolve_data_dir("some/folder") == "some/folder" and rows.resolve_data_dir(None) is None


def test_settings_files_are_checked_whole(tmp_path):
    bad = tmp_path / "run.yaml"
    bad.write_text("lerning_rate: 1\nmax_stepz: 3\n")
    with pytest.raises(SettingsError, match="unknown settings 'lerning_rate', 'max_stepz'"):
        load_config(["--config", str(bad)])
    bad.write_text("max_steps: abc\nlora:\n  r: 1.5\n")
    with pytest.raises(SettingsError, match=r"max_steps: expected a whole number, got 'abc'.*r: expected a whole"):
        load_config(["--config", str(bad)])
    bad.write_text("train: [unclosed\n")
    with pytest.raises(SettingsError, match="is not valid YAML at line"):
        load_config(["--config", str(bad)])
    bad.write_text("max_seq_length: null\nlora_r: 4.5\nnope: 1\n")  # every problem at once
    with pytest.raises(
        SettingsError,
        match=r"unknown setting 'nope'.*max_seq_length needs a value.*r: expected a "
        "whole number",
    ):
        load_config(["--config", str(bad)])
    # an unquoted yes/no for a yes/no choice, an empty group, an optional setting unset
    bad.write_text(
        "per_device_train_batch_size: 4\nnum_train_epochs: 3\nuse_unsloth: no\nlora:\ndata:\n  train_limit: null\n"
    )
    cfg = load_config(["--config", str(bad)])
    assert (cfg.train.per_device_train_batch_size, cfg.train.num_train_epochs, cfg.model.use_unsloth) == (4, 3.0, "no")
    assert cfg.data.train_limit is None
    cfg = RunConfig()
    apply_settings(cfg, {"target_modules": "q_proj, v_proj", "num_train_epochs": 1, "load_in_4bit": "no"}, "test")
    assert cfg.lora.target_modules == ["q_proj", "v_proj"] and cfg.train.num_train_epochs == 1.0
    assert cfg.model.load_in_4bit is False
    assert dataclasses.asdict(cfg)  # still plain data


@pytest.mark.parametrize("text", ["inf", "nan", "-inf", "1e999", "Infinity"])
def test_nonfinite_flags_are_refused_before_anything_loads(text, capsys):
    with pytest.raises(SystemExit) as e:
        load_config(["--preset", "smoke", f"--learning-rate={text}"])
    assert e.value.code == 2
    assert f"--learning-rate: must be a finite number, got '{text}'" in capsys.readouterr().err


def test_nonfinite_yaml_values_are_refused_all_at_once(tmp_path):
    from mcqa_core.training.checks import config_problems

    bad = tmp_path / "run.yaml"
    bad.write_text("learning_rate: .inf\nlora:\n  lora_dropout: .nan\nnum_train_epochs: -.inf\nweight_decay: 0.01\n")
    with pytest.raises(
        SettingsError,
        match=r"learning_rate: must be a finite number, got inf.*dropout: must be a "
        r"finite number, got nan.*num_train_epochs: must be a finite number",
    ):
        load_config(["--config", str(bad)])
    cfg = RunConfig()  # built in code, past the converters: the run's checks still refuse it, once per setting
    cfg.train.learning_rate, cfg.train.weight_decay = float("nan"), float("inf")
    assert config_problems(cfg) == [
        "--learning-rate must be a finite number, got nan",
        "--weight-decay must be a finite number, got inf",
    ]


COMMANDS = {
    "mcqa-train": "mcqa_core.cli.train_command",
    "mcqa-eval": "mcqa_core.cli.eval_command",
    "mcqa-export": "mcqa_core.cli.export_command",
    "mcqa-publish": "mcqa_core.cli.publish_command",
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help_loads_no_model_library(command):
    code = (
        f"import sys\nfrom {COMMANDS[command]} import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit as e:\n    assert e.code == 0\n"
        "print('heavy:', sorted(m for m in ('torch', 'transformers', 'trl', 'peft') if m in sys.modules))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "usage:" in r.stdout and "heavy: []" in r.stdout


def test_console_commands_are_installed():
    """`pip install -e .` (scripts/setup.sh) puts the four commands beside the interpreter."""
    for command in COMMANDS:
        exe = REPO / ".venv" / "bin" / command
        if not exe.exists():
            exe = type(REPO)(sys.executable).parent / command
        r = subprocess.run([str(exe), "--help"], cwd=REPO, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0 and "usage:" in r.stdout, (command, r.stderr)


def test_every_command_refuses_bad_input_in_one_line(tmp_path):
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("train: [unclosed\n")
    not_adapter = tmp_path / "empty"
    not_adapter.mkdir()
    cases = [
        (["train_adapter.py", "--config", str(bad_yaml)], "is not valid YAML"),
        (
            ["train_adapter.py", "--per-device-train-batch-size", "x"],
            "--per-device-train-batch-size: expected a whole number, got 'x'",
        ),
        (
            ["train_adapter.py", "--preset", "smoke", "--learning-rate", "inf"],
            "--learning-rate: must be a finite number, got 'inf'",
        ),
        (
            [
                "train_adapter.py",
                "--preset",
                "smoke",
                "--eval-steps",
                "3",
                "--save-steps",
                "4",
                "--output-dir",
                str(tmp_path / "o"),
            ],
            "cannot start training: --save-steps 4 must be a multiple of --eval-steps 3",
        ),
        (["-m", "mcqa_core.cli.eval_command", "--limit", "0"], "--limit: must be at least 1, got 0"),
        (
            ["-m", "mcqa_core.cli.export_command", "--adapter", str(not_adapter), "--out", str(tmp_path / "m")],
            "cannot export: --adapter: adapter folder",
        ),
        (
            ["-m", "mcqa_core.cli.publish_command", str(not_adapter), "me/x"],
            "holds neither adapter_config.json nor config.json",
        ),
    ]
    for args, message in cases:
        r = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=300)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2, (args, r.stderr)
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], (args, r.stderr)


@pytest.mark.parametrize("preset", ["course", "cpu-demo", "smoke"])
def test_no_preset_chooses_its_checkpoint_on_a_reported_row(preset, data_dir):
    """Training, dev (best checkpoint) and report rows are pairwise disjoint for every preset (the course
    preset read from the local files in place of the hub)."""
    from mcqa_core.data.medmcqa import load_split

    d = load_config(["--preset", preset, "--data-dir", str(data_dir)]).data
    ids = {
        name: {r["id"] for r in load_split(split, data_dir).rows}
        for name, split in (("train", d.train_split), ("dev", d.eval_split), ("report", d.report_split))
    }
    assert ids["train"] and ids["dev"] and ids["report"]
    assert not ids["train"] & ids["dev"] and not ids["train"] & ids["report"] and not ids["dev"] & ids["report"]


def test_the_seeds_protocol_is_allowed_and_named(tmp_path):
    from mcqa_core.training.checks import config_problems, selection

    seed = load_config(["--eval-split", "validation"])
    assert not config_problems(seed) or all("validation" not in p for p in config_problems(seed))
    assert selection(seed.data).startswith("the seed's protocol: checkpoints chosen on validation")
    assert selection(load_config([]).data) == "dev slice train-dev, disjoint from the reported split validation"
    overlap = load_config(["--preset", "cpu-demo", "--train-split", "validation"])
    assert any("--train-split validation overlaps --eval-split demo-dev" in p for p in config_problems(overlap))


def test_one_spelling_per_setting_and_older_ones_load_with_a_notice(tmp_path, capsys):
    from mcqa_core.training.settings import CONFIG_CLASSES, build_parser

    shown = [a for a in build_parser()._actions if a.option_strings and a.help != "==SUPPRESS=="]
    flags = {a.option_strings[0]: a.dest for a in shown}
    for group, cls in CONFIG_CLASSES.items():  # the flag is the field's name, dashed; the dest is group.field
        for f in dataclasses.fields(cls):
            assert flags["--" + f.name.replace("_", "-")] == f"{group}.{f.name}"
    assert set(RunConfig().to_dict()["lora"]) >= {"lora_r", "lora_alpha", "lora_dropout"}  # mcqa_run.json's keys
    old = tmp_path / "old.yaml"
    old.write_text("batch-size: 4\nepochs: 3\nlora:\n  r: 8\nmax-steps: 5\n")
    cfg = load_config(["--config", str(old), "--grad-accum", "2", "--no-4bit"])
    assert (cfg.train.per_device_train_batch_size, cfg.train.num_train_epochs, cfg.lora.lora_r) == (4, 3.0, 8)
    assert (cfg.train.max_steps, cfg.train.gradient_accumulation_steps, cfg.model.load_in_4bit) == (5, 2, False)
    notices = capsys.readouterr().err.strip().splitlines()
    assert notices == [
        f"notice: --config {old}: older spellings still load; write batch-size -> "
        "per_device_train_batch_size, epochs -> num_train_epochs, r -> lora_r, max-steps -> max_steps",
        "notice: command line: older spellings still load; write --grad-accum -> "
        "--gradient-accumulation-steps, --4bit -> --load-in-4bit",
    ]
    assert load_config(["--preset", "smoke"]) and capsys.readouterr().err == ""  # the presets use the one spelling


def test_bounds_and_choices_are_declared_once_and_checked_together():
    from mcqa_core.training.checks import config_problems

    cfg = load_config(
        [
            "--preset",
            "smoke",
            "--lora-r",
            "0",
            "--per-device-train-batch-size",
            "0",
            "--learning-rate",
            "-1",
            "--lora-dropout",
            "1",
        ]
    )
    assert config_problems(cfg) == [
        "--lora-r must be at least 1, got 0",
        "--lora-dropout must be below 1, got 1.0",
        "--learning-rate must be above 0, got -1.0",
        "--per-device-train-batch-size must be at least 1, got 0",
    ]
    cfg = RunConfig()
    cfg.data.eval_split = "nope"  # built in code: the declared choices still apply
    assert config_problems(cfg)[0].startswith("--eval-split must be one of train-dev, demo-dev, validation, heldout")


def test_report_to_takes_the_trackers_transformers_knows_and_keeps_them_in_the_adapter_folder(tmp_path, monkeypatch):
    import importlib.util

    from mcqa_core.training import trackers
    from mcqa_core.training.checks import config_problems
    from mcqa_core.training.settings import load_config

    def problems(value: str) -> list[str]:
        cfg = load_config(["--preset", "smoke", "--output-dir", str(tmp_path / "o"), "--report-to", value])
        return [p for p in config_problems(cfg) if "--report-to" in p]

    assert problems("tensorboard") == [] and problems("none") == []
    assert "must be none or a comma-separated list" in problems("tensorbord")[0]
    assert problems("none,tensorboard")  # none means none
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "wandb" else real(name))
    assert problems("tensorboard,wandb") == [
        "--report-to wandb needs the wandb package: pip install wandb (or --report-to tensorboard)"
    ]
    # each tracker writes into the adapter folder; W&B without a login stays offline; a user's own setting wins
    monkeypatch.setattr(trackers.Path, "home", lambda: tmp_path)  # no ~/.netrc
    env = {"MLFLOW_TRACKING_URI": "http://mine:5000"}
    said = trackers.tracker_environment("tensorboard,wandb,mlflow", tmp_path / "o", env)
    assert env["TENSORBOARD_LOGGING_DIR"] == str(tmp_path / "o" / "tensorboard")
    assert env["WANDB_MODE"] == "offline" and env["WANDB_DIR"] == str(tmp_path / "o")
    assert env["MLFLOW_TRACKING_URI"] == "http://mine:5000" and len(said) == 3
    env = {"WANDB_API_KEY": "k"}
    trackers.tracker_environment("wandb,mlflow", tmp_path / "o", env)
    assert "WANDB_MODE" not in env and env["MLFLOW_TRACKING_URI"] == (tmp_path / "o" / "mlruns").resolve().as_uri()


def test_every_training_setting_says_where_it_is_checked():
    """docs/settings-checks.md lists every mcqa-train setting (a new setting without its row fails here)."""
    from mcqa_core.training.settings import CONFIG_CLASSES, flag_of

    doc = (REPO / "docs" / "settings-checks.md").read_text()
    flags = {flag_of(group, f.name) for group, cls in CONFIG_CLASSES.items() for f in dataclasses.fields(cls)}
    listed = set(re.findall(r"^\| `(--[a-z0-9-]+)`", doc, re.M))
    assert flags == listed  # every setting has its row, and no row names a setting that is gone
