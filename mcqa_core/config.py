"""Training configuration: one dataclass per concern, every field with its help, named presets.

Precedence, lowest to highest: field defaults (the course recipe) < preset < `--config run.yaml` < flags.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from .data import default_data_dir
from .modeling import DEFAULT_MODEL, LORA_TARGETS, OFFLINE_MODEL, TINY_MODEL


def _f(default, help: str, **kw):
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help, **kw})
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class ModelConfig:
    model_name: str = _f(DEFAULT_MODEL, f"Base model: hub id, local folder, or offline alias ({OFFLINE_MODEL}, {TINY_MODEL}).")
    load_in_4bit: bool = _f(True, "Load the base in 4-bit NF4 with double quantization (bitsandbytes); --no-4bit for full precision.", flag="4bit")
    max_seq_length: int = _f(512, "Longest prompt+answer in tokens; longer questions are shortened, never options or answers.")
    use_unsloth: str = _f("auto", "auto: unsloth on a CUDA GPU when installed, else transformers+peft; yes; no.", choices=("auto", "yes", "no"))


@dataclass
class LoraArgs:
    r: int = _f(16, "LoRA rank.", flag="lora-r")
    alpha: int = _f(16, "LoRA alpha (with rsLoRA the scale is alpha/sqrt(r)).", flag="lora-alpha")
    dropout: float = _f(0.0, "LoRA dropout.", flag="lora-dropout")
    use_rslora: bool = _f(True, "Rank-stabilised LoRA scaling.", flag="rslora")
    target_modules: list = _f(list(LORA_TARGETS), "Projections that get LoRA (comma-separated on the command line).")
    gradient_checkpointing: bool = _f(True, "Recompute activations in the backward pass to save memory.")
    random_state: int = _f(42, "Seed for the LoRA initialisation.")


@dataclass
class DataArgs:
    data_dir: str | None = _f(None, "Folder with train.jsonl / validation.jsonl (HF schema); unset: the hub (openlifescienceai/medmcqa).")
    train_split: str = _f("train", "Split to train on: train, demo-train (offline stand-in; never the held-out rows).")
    eval_split: str = _f("validation", "Split for eval loss and letter accuracy: validation or heldout.")
    train_limit: int | None = _f(None, "Use at most this many training rows (after validation).")
    eval_limit: int | None = _f(None, "Use at most this many evaluation rows during training.")
    report_limit: int | None = _f(None, "Rows of the eval split scored for the final report (unset: all).")


@dataclass
class TrainArgs:
    output_dir: str = _f("adapters/medmcqa-lora", "Where the adapter folder is written (checkpoints under checkpoints/).")
    overwrite: bool = _f(False, "Allow writing into an output folder that already holds a different run.")
    resume: bool = _f(False, "Continue from the newest checkpoint in output_dir/checkpoints.")
    learning_rate: float = _f(3e-4, "Peak learning rate.")
    lr_scheduler_type: str = _f("linear", "Learning-rate schedule after warm-up.")
    warmup_steps: int = _f(10, "Linear warm-up steps.")
    per_device_train_batch_size: int = _f(64, "Rows per device per forward pass.", flag="batch-size")
    gradient_accumulation_steps: int = _f(16, "Forward passes per optimizer step.", flag="grad-accum")
    per_device_eval_batch_size: int = _f(64, "Rows per forward pass when evaluating and scoring.", flag="eval-batch-size")
    num_train_epochs: float = _f(2.0, "Passes over the training rows.", flag="epochs")
    max_steps: int = _f(-1, "Stop after this many optimizer steps (-1: run the epochs).")
    eval_steps: int = _f(50, "Evaluate (eval loss + letter accuracy) every N steps.")
    save_steps: int = _f(50, "Checkpoint every N steps (a multiple of eval_steps, for best-model tracking).")
    logging_steps: int = _f(50, "Log the training loss every N steps.")
    save_total_limit: int = _f(1, "Checkpoints kept (the best is always kept too).")
    optim: str = _f("adamw_8bit", "Optimizer (adamw_8bit is bitsandbytes' 8-bit AdamW; adamw_torch without bitsandbytes).")
    weight_decay: float = _f(0.01, "Weight decay.")
    seed: int = _f(0, "Training seed (data order).")
    group_by_length: bool = _f(True, "Batch rows of similar length together to cut padding (same loss, less compute).")
    report_to: str = _f("none", "Trainer integrations to log to (none, tensorboard, wandb...).")
    relora_steps: int | None = _f(None, "ReLoRA: every N optimizer steps merge the LoRA into the model, re-initialise it, "
                                        "reset its optimizer state and re-warm the LR (unset: plain LoRA).")
    relora_warmup_steps: int | None = _f(None, "LR warm-up steps after each ReLoRA restart (unset: --warmup-steps).")
    push_to_hub: str | None = _f(None, "Upload the finished adapter folder to this hub repo (owner/name); the token "
                                      "comes from HF_TOKEN or `hf auth login`, never a flag.")


CONFIG_CLASSES = {"model": ModelConfig, "lora": LoraArgs, "data": DataArgs, "train": TrainArgs}


@dataclass
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    lora: LoraArgs = field(default_factory=LoraArgs)
    data: DataArgs = field(default_factory=DataArgs)
    train: TrainArgs = field(default_factory=TrainArgs)
    preset: str = "course"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# Presets are overrides of the course recipe (the defaults above), nothing else.
PRESETS: dict[str, dict] = {
    "course": {},
    "cpu-demo": {
        "model": {"model_name": OFFLINE_MODEL, "max_seq_length": 256},
        # 135M parameters fit easily in RAM: recomputing activations would only cost time on 2 cores.
        "lora": {"gradient_checkpointing": False},
        "data": {"data_dir": default_data_dir(), "train_split": "demo-train", "eval_split": "heldout",
                 "train_limit": 1024, "eval_limit": 96},
        "train": {"output_dir": "adapters/cpu-demo", "per_device_train_batch_size": 8,
                  "gradient_accumulation_steps": 4, "per_device_eval_batch_size": 16, "num_train_epochs": 1.0,
                  "warmup_steps": 3, "eval_steps": 8, "save_steps": 8, "logging_steps": 4},
    },
    "smoke": {
        "model": {"model_name": TINY_MODEL, "max_seq_length": 192},
        "data": {"data_dir": default_data_dir(), "train_split": "demo-train", "eval_split": "heldout",
                 "train_limit": 32, "eval_limit": 16,
                 "report_limit": 32},
        "train": {"output_dir": "adapters/smoke", "per_device_train_batch_size": 8,
                  "gradient_accumulation_steps": 1, "per_device_eval_batch_size": 16, "max_steps": 6,
                  "learning_rate": 1e-3, "warmup_steps": 1, "eval_steps": 3, "save_steps": 3, "logging_steps": 1},
    },
}


def _flag(f: dataclasses.Field) -> str:
    return f.metadata.get("flag", f.name.replace("_", "-"))


def build_parser(description: str = "") -> argparse.ArgumentParser:
    """argparse built from the dataclasses: every field is a flag, every default comes from a preset."""
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default=argparse.SUPPRESS, choices=sorted(PRESETS),
                   help="Named recipe: course (default, the course's GPU recipe), cpu-demo (offline SmolLM2, "
                        "~30 min on 2 cores), smoke (tiny random Llama, seconds).")
    p.add_argument("--config", default=argparse.SUPPRESS, metavar="RUN.YAML",
                   help="YAML file of settings (flat field names or grouped under model/lora/data/train); flags win.")
    for group, cls in CONFIG_CLASSES.items():
        g = p.add_argument_group(group)
        for f in dataclasses.fields(cls):
            dest = f"{group}.{f.name}"
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            helptext = f"{f.metadata['help']} (course: {default})"
            if f.type in ("bool", bool):
                g.add_argument(f"--{_flag(f)}", dest=dest, action=argparse.BooleanOptionalAction,
                               default=argparse.SUPPRESS, help=helptext)
            else:
                kind = {"int": int, "float": float, "int | None": int, "float | None": float}.get(str(f.type), str)
                kw = {"choices": f.metadata["choices"]} if "choices" in f.metadata else {}
                g.add_argument(f"--{_flag(f)}", dest=dest, type=kind, default=argparse.SUPPRESS, help=helptext,
                               metavar=f.name.upper(), **kw)
    return p


def _apply(cfg: RunConfig, overrides: dict, origin: str) -> None:
    for key, value in overrides.items():
        if isinstance(value, dict) and key in CONFIG_CLASSES:
            _apply(cfg, {f"{key}.{k}": v for k, v in value.items()}, origin)
            continue
        group, _, name = key.rpartition(".")
        targets = [group] if group else [g for g, cls in CONFIG_CLASSES.items()
                                          if name in {f.name for f in dataclasses.fields(cls)}]
        if len(targets) != 1 or group and group not in CONFIG_CLASSES:
            raise ValueError(f"{origin}: unknown setting {key!r}; see `python train_adapter.py --help`")
        section = getattr(cfg, targets[0])
        if name not in {f.name for f in dataclasses.fields(section)}:
            raise ValueError(f"{origin}: unknown setting {key!r}; see `python train_adapter.py --help`")
        if name == "target_modules" and isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        setattr(section, name, value)


def load_config(argv: list[str] | None = None) -> RunConfig:
    """defaults < preset < --config YAML < command-line flags."""
    args = vars(build_parser().parse_args(argv))
    preset = args.pop("preset", None)
    yaml_path = args.pop("config", None)
    file_settings = {}
    if yaml_path:
        import yaml

        path = Path(yaml_path)
        if not path.is_file():
            raise ValueError(f"--config {path}: no such file")
        file_settings = yaml.safe_load(path.read_text()) or {}
        if not isinstance(file_settings, dict):
            raise ValueError(f"--config {path}: expected a mapping of settings, got {type(file_settings).__name__}")
        preset = preset or file_settings.pop("preset", None)
        file_settings.pop("preset", None)
    preset = preset or "course"
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(sorted(PRESETS))}")
    cfg = RunConfig(preset=preset)
    _apply(cfg, PRESETS[preset], f"preset {preset}")
    _apply(cfg, file_settings, f"--config {yaml_path}")
    _apply(cfg, args, "command line")
    return cfg
