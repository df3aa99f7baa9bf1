"""Every check on a run's settings, in one place, before anything heavy is imported, loaded or written: each
setting's declared choices and bounds, combinations that would train nothing or silently ignore a flag,
ReLoRA's and several processes' limits, and the output folder; then, once the rows are encoded, what the
rows must hold for the run (fit_problems)."""

from __future__ import annotations

import json
from pathlib import Path

from ..data.banks.bank_flags import mapping_problems
from ..data.medmcqa import splits_overlap
from ..errors import ModelError
from ..models.architecture import layer_names, missing_targets, model_folder, module_names
from ..models.loading import cache_problem, choose_backend, has_bitsandbytes, model_name_problem
from ..models.tuners import tuner_for
from ..setting_fields import field_problems
from .distributed import parallel_problems
from .output_folder import output_problems
from .setting_groups import CONFIG_CLASSES, RunConfig
from .settings import flag_of
from .trackers import tracker_problems
from .trainer_names import trainer_name_problems


def start_problems(cfg: RunConfig) -> list[str]:
    """Everything that stops a run from starting, known from its settings and its output folder alone."""
    out = Path(cfg.train.output_dir).expanduser()
    return config_problems(cfg) + output_problems(out, cfg.train.overwrite, cfg.train.resume)


def config_problems(cfg: RunConfig) -> list[str]:
    """Every problem with the settings alone (no file is read): bounds, combinations, ReLoRA, processes."""
    problems = [
        p
        for group in CONFIG_CLASSES
        for p in field_problems(getattr(cfg, group), lambda f, g=group: flag_of(g, f.name))
    ]
    t = cfg.train
    if t.save_steps % max(t.eval_steps, 1):
        problems.append(
            f"--save-steps {t.save_steps} must be a multiple of --eval-steps {t.eval_steps} "
            "(the best checkpoint is chosen at evaluations)"
        )
    if bad_model := model_name_problem(cfg.model.model_name) or cache_problem(cfg.model.model_name):
        problems.append(bad_model)
    if cfg.model.use_unsloth == "yes":  # asks torch for a GPU (a second), still before any model loads
        try:
            choose_backend("yes")
        except ModelError as e:
            problems.append(str(e))
    problems += mapping_problems(cfg.data, cfg.data.bank)
    if cfg.data.eval_bank and not cfg.data.bank:
        problems.append("--eval-bank needs --bank (the bank to train on)")
    if not cfg.data.bank:  # a bank brings its own split: its held-out quarter, or --eval-bank
        problems += _split_problems(cfg.data)
    if t.optim.endswith("8bit") and not has_bitsandbytes():
        problems.append(f"--optim {t.optim} needs bitsandbytes: pip install bitsandbytes (or --optim adamw_torch)")
    problems += trainer_name_problems(t) + tracker_problems(t.report_to)
    problems += tuner_for(cfg.method.peft_method).problems(cfg.model, cfg.method, cfg.lora, cfg.explicit)
    if not cfg.lora.target_modules:
        problems.append("--target-modules names no projection; give at least one (e.g. q_proj,v_proj)")
    elif not bad_model:
        problems += target_problems(cfg) + _layers_problems(cfg)
    return problems + _step_problems(cfg) + relora_problems(cfg) + parallel_problems(cfg)


def target_problems(cfg: RunConfig) -> list[str]:
    """LoRA's --target-modules against the base's own module names, read without loading a weight
    (models/architecture.py); a base not on this machine yet is checked when it loads."""
    if cfg.method.peft_method != "lora":
        return []
    problems = []
    if "lm_head" in cfg.lora.target_modules:  # TRL raises it once the model has loaded
        problems.append(
            "--target-modules lm_head: TRL's training loss (chunked_nll) cannot train a LoRA on the output layer; "
            "drop lm_head"
        )
    modules = module_names(cfg.model.model_name)
    if missing := missing_targets(modules, cfg.lora.target_modules) if modules else []:
        problems.append(
            f"--target-modules: {cfg.model.model_name} has no module named {' or '.join(missing)}; LoRA can "
            f"target its layers {', '.join(n for n in layer_names(modules) if n != 'lm_head')}"
        )
    return problems


def _layers_problems(cfg: RunConfig) -> list[str]:
    """--trainable-layers against the base's decoder layers, from its config.json (a base not on this machine yet
    is checked when it loads)."""
    folder = model_folder(cfg.model.model_name) if cfg.method.peft_method == "subset" else None
    try:
        n = json.loads((folder / "config.json").read_text()).get("num_hidden_layers") if folder else None
    except (OSError, ValueError):
        return []
    k = cfg.method.trainable_layers
    if isinstance(n, int) and k > n:
        return [f"--trainable-layers {k} is more than {cfg.model.model_name}'s {n} decoder layers; give at most {n} "
                "(or --peft-method full)"]  # fmt: skip
    return []


def _split_problems(d) -> list[str]:
    """The training rows never meet the rows that choose the checkpoint or the reported ones."""
    problems = []
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
        return (
            f"the seed's protocol: checkpoints chosen on {d.eval_split}, which is also the reported split "
            f"{d.report_split}"
        )
    return f"dev slice {d.eval_split}, disjoint from the reported split {d.report_split}"


def _step_problems(cfg: RunConfig) -> list[str]:
    """A run must train at least one step, and an epoch count that max_steps overrides is not silently lost."""
    t = cfg.train
    if t.max_steps == 0 or t.max_steps < -1:
        return [f"--max-steps must be at least 1 (or -1 to train by --num-train-epochs), got {t.max_steps}"]
    if t.max_steps < 0 and not t.num_train_epochs > 0:
        return [
            f"--num-train-epochs {t.num_train_epochs} trains no step; give --num-train-epochs above 0 or --max-steps N"
        ]
    if t.max_steps > 0 and "train.num_train_epochs" in cfg.explicit:
        source = "--max-steps" if "train.max_steps" in cfg.explicit else f"the {cfg.preset} preset"
        return [
            f"--num-train-epochs {t.num_train_epochs} has no effect: {source} sets max_steps {t.max_steps}; "
            "pass --max-steps -1 to train by epochs, or drop --num-train-epochs"
        ]
    return []


def relora_problems(cfg) -> list[str]:
    """Settings that ReLoRA cannot run with (the step count is checked with the rows: fit_problems)."""
    t, problems = cfg.train, []
    if t.relora_steps is None or t.relora_steps < 1:  # below 1: named with the bounds
        return problems
    if cfg.method.peft_method != "lora":
        problems.append(f"--relora-steps restarts a LoRA; --peft-method {cfg.method.peft_method} has none: drop one")
    if t.relora_steps < t.warmup_steps:
        problems.append(
            f"--relora-steps {t.relora_steps} is smaller than --warmup-steps {t.warmup_steps}: the first "
            "restart would come before the warm-up ends; raise --relora-steps or lower --warmup-steps"
        )
    if t.relora_warmup_steps is not None and t.relora_warmup_steps >= t.relora_steps:
        problems.append(f"--relora-warmup-steps {t.relora_warmup_steps} must be between 0 and --relora-steps - 1")
    if t.resume:
        problems.append(
            "--resume with --relora-steps is not supported: checkpoints hold the live LoRA only, not "
            "the updates merged at earlier restarts; start a new run"
        )
    if t.lr_scheduler_type == "reduce_lr_on_plateau":
        problems.append(
            "--relora-steps needs a step-based --lr-scheduler-type (linear, cosine, constant...), "
            "not reduce_lr_on_plateau"
        )
    if cfg.model.use_unsloth == "yes":
        problems.append(
            "--relora-steps runs on the transformers+peft path (unsloth's fused LoRA kernels bypass the "
            "merged factors); pass --use-unsloth no"
        )
    return problems


def fit_problems(cfg: RunConfig, encoded: dict, total_steps: int, world_size: int, batch_size: int) -> list[str]:
    """What the encoded rows must hold for the run: a row of each part that fits, a full micro-batch for every
    process, and a ReLoRA restart before the run ends. encoded: {"training": EncodedRows, "evaluation": ...}."""
    max_len, t = cfg.model.max_seq_length, cfg.train
    problems = [
        f"no {what} row fits in --max-seq-length {max_len} tokens; raise it (512 fits all MedMCQA rows)"
        for what, enc in encoded.items()
        if not enc.examples
    ]
    n_train = len(encoded["training"].examples)
    if world_size > 1 and n_train < world_size * batch_size:
        problems.append(
            f"{world_size} processes x --per-device-train-batch-size {batch_size} need at least "
            f"{world_size * batch_size} training rows, only {n_train} are usable: launch fewer processes "
            "(--num_processes / --nproc_per_node), lower --per-device-train-batch-size, or raise "
            "--train-limit"
        )
    if t.relora_steps is not None and n_train and t.relora_steps >= total_steps:
        problems.append(
            f"--relora-steps {t.relora_steps} is not smaller than the run ({total_steps} optimizer "
            "steps): no restart would happen; lower --relora-steps or train longer (--max-steps / "
            "--num-train-epochs)"
        )
    return problems
