"""Every problem with a run's settings, found before anything is imported, loaded or written: ranges,
combinations that would train nothing or silently ignore a flag, ReLoRA's and several processes' limits."""

from __future__ import annotations

import dataclasses
import math

from ..data.bank_flags import mapping_problems
from ..data.medmcqa import SPLITS, splits_overlap
from ..errors import ModelError, RunError, refuse
from ..models.loading import choose_backend, has_bitsandbytes, model_name_problem
from .distributed import parallel_problems
from .settings import CONFIG_CLASSES, EVAL_SPLITS, REPORT_SPLITS, RunConfig, flag_of


def validate_config(cfg: RunConfig) -> None:
    """Every problem with the settings in one error, before anything is loaded."""
    refuse(RunError, "start training", config_problems(cfg))


def config_problems(cfg: RunConfig) -> list[str]:
    """Every problem with the settings alone (no file is read): ranges, combinations, ReLoRA, processes."""
    t, problems = cfg.train, []
    for name in ("per_device_train_batch_size", "gradient_accumulation_steps", "eval_steps", "save_steps",
                 "logging_steps"):
        if getattr(t, name) < 1:
            problems.append(f"{flag_of('train', name)} must be at least 1, got {getattr(t, name)}")
    if t.eval_steps >= 1 and t.save_steps % t.eval_steps:
        problems.append(f"--save-steps {t.save_steps} must be a multiple of --eval-steps {t.eval_steps} "
                        "(the best checkpoint is chosen at evaluations)")
    for name in ("train_limit", "eval_limit", "report_limit"):
        value = getattr(cfg.data, name)
        if value is not None and value < 1:
            problems.append(f"{flag_of('data', name)} must be a positive number of rows, got {value}")
    if bad_model := model_name_problem(cfg.model.model_name):
        problems.append(bad_model)
    if cfg.model.use_unsloth == "yes":  # asks torch for a GPU (a second), still before any model loads
        try:
            choose_backend("yes")
        except ModelError as e:
            problems.append(str(e))
    if cfg.model.max_seq_length < 32:
        problems.append(f"--max-seq-length {cfg.model.max_seq_length} is too small for any MedMCQA prompt")
    problems += mapping_problems(cfg.data, cfg.data.bank)
    if cfg.data.eval_bank and not cfg.data.bank:
        problems.append("--eval-bank needs --bank (the bank to train on)")
    if not cfg.data.bank:  # a bank brings its own split: its held-out quarter, or --eval-bank
        problems += _split_problems(cfg.data)
    if t.optim.endswith("8bit") and not has_bitsandbytes():
        problems.append(f"--optim {t.optim} needs bitsandbytes: pip install bitsandbytes (or --optim adamw_torch)")
    problems += _range_problems(cfg) + _step_problems(cfg) + relora_problems(cfg) + parallel_problems(cfg)
    return problems


def _split_problems(d) -> list[str]:
    """The training rows never meet the rows that choose the checkpoint or the reported ones."""
    problems = []
    if d.train_split not in SPLITS:
        problems.append(f"--train-split must be one of {', '.join(SPLITS)}, got {d.train_split!r}")
    if d.eval_split not in EVAL_SPLITS:
        problems.append(f"--eval-split must be one of {', '.join(EVAL_SPLITS)}, got {d.eval_split!r}")
    if d.report_split not in REPORT_SPLITS:
        problems.append(f"--report-split must be one of {', '.join(REPORT_SPLITS)}, got {d.report_split!r}")
    if problems:
        return problems
    for flag, other in (("--eval-split", d.eval_split), ("--report-split", d.report_split)):
        if splits_overlap(d.train_split, other):
            rest = {"train": "train-rest", "validation": "demo-train"}.get(d.train_split, "demo-train")
            problems.append(f"--train-split {d.train_split} overlaps {flag} {other}; train on {rest}")
    return problems


def selection(d) -> str:
    """How the best checkpoint was chosen, in words for mcqa_run.json."""
    if d.bank:
        return "the bank's dev part" if not d.eval_bank else "--eval-bank (also the reported rows)"
    if splits_overlap(d.eval_split, d.report_split):
        return (f"the seed's protocol: checkpoints chosen on {d.eval_split}, which is also the reported split "
                f"{d.report_split}")
    return f"dev slice {d.eval_split}, disjoint from the reported split {d.report_split}"


def _finite_problems(cfg: RunConfig) -> list[str]:
    """inf or nan in any number setting (a config built in code skips the flag and YAML converters)."""
    return [f"{flag_of(group, f.name)} must be a finite number, got {value}"
            for group in CONFIG_CLASSES for f in dataclasses.fields(getattr(cfg, group))
            if isinstance(value := getattr(getattr(cfg, group), f.name), float) and not math.isfinite(value)]


def _range_problems(cfg: RunConfig) -> list[str]:
    t, lo, problems = cfg.train, cfg.lora, _finite_problems(cfg)
    if math.isfinite(t.learning_rate) and not t.learning_rate > 0:  # nan: named once, above
        problems.append(f"--learning-rate must be above 0, got {t.learning_rate}")
    for group, name, value, low in (("train", "warmup_steps", t.warmup_steps, 0),
                                    ("train", "weight_decay", t.weight_decay, 0),
                                    ("train", "per_device_eval_batch_size", t.per_device_eval_batch_size, 1),
                                    ("train", "save_total_limit", t.save_total_limit, 1),
                                    ("lora", "r", lo.r, 1), ("lora", "alpha", lo.alpha, 1)):
        if value < low:
            problems.append(f"{flag_of(group, name)} must be at least {low}, got {value}")
    if math.isfinite(lo.dropout) and not 0 <= lo.dropout < 1:
        problems.append(f"--lora-dropout must be in [0, 1), got {lo.dropout}")
    if not lo.target_modules:
        problems.append("--target-modules names no projection; give at least one (e.g. q_proj,v_proj)")
    return problems


def _step_problems(cfg: RunConfig) -> list[str]:
    """A run must train at least one step, and an epoch count that max_steps overrides is not silently lost."""
    t = cfg.train
    if t.max_steps == 0 or t.max_steps < -1:
        return [f"--max-steps must be at least 1 (or -1 to train by --epochs), got {t.max_steps}"]
    if t.max_steps < 0 and not t.num_train_epochs > 0:
        return [f"--epochs {t.num_train_epochs} trains no step; give --epochs above 0 or --max-steps N"]
    if t.max_steps > 0 and "train.num_train_epochs" in cfg.explicit:
        source = "--max-steps" if "train.max_steps" in cfg.explicit else f"the {cfg.preset} preset"
        return [f"--epochs {t.num_train_epochs} has no effect: {source} sets max_steps {t.max_steps}; pass "
                "--max-steps -1 to train by epochs, or drop --epochs"]
    return []


def relora_problems(cfg) -> list[str]:
    """Settings that ReLoRA cannot run with (the step-count check needs the data: relora.steps_problems)."""
    t, problems = cfg.train, []
    if t.relora_steps is None:
        return problems
    if t.relora_steps < 1:
        problems.append(f"--relora-steps must be at least 1, got {t.relora_steps}")
    elif t.relora_steps < t.warmup_steps:
        problems.append(f"--relora-steps {t.relora_steps} is smaller than --warmup-steps {t.warmup_steps}: the first "
                        "restart would come before the warm-up ends; raise --relora-steps or lower --warmup-steps")
    if t.relora_warmup_steps is not None and not 0 <= t.relora_warmup_steps < max(1, t.relora_steps or 1):
        problems.append(f"--relora-warmup-steps {t.relora_warmup_steps} must be between 0 and --relora-steps - 1")
    if t.resume:
        problems.append("--resume with --relora-steps is not supported: checkpoints hold the live LoRA only, not "
                        "the updates merged at earlier restarts; start a new run")
    if t.lr_scheduler_type == "reduce_lr_on_plateau":
        problems.append("--relora-steps needs a step-based --lr-scheduler-type (linear, cosine, constant...), "
                        "not reduce_lr_on_plateau")
    if cfg.model.use_unsloth == "yes":
        problems.append("--relora-steps runs on the transformers+peft path (unsloth's fused LoRA kernels bypass the "
                        "merged factors); pass --use-unsloth no")
    return problems
