"""Training settings: one dataclass per concern, every field a flag and a YAML key, presets as files.

Precedence, lowest to highest: field defaults (the course recipe) < preset (`presets/NAME.yaml`, read
when the run starts) < `--config run.yaml` < flags. `--preset NAME` and `--config FILE` go through the
same loader; every problem in a file is reported at once. training/checks.py checks the whole result.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..command_line import Parser, add_fields, check_value, flag_name, setting
from ..data.bank_flags import BankColumns
from ..data.prompt import COMPLETIONS
from ..errors import SettingsError, one_line
from ..models.loading import (
    DEFAULT_MODEL,
    LORA_TARGETS,
    OFFLINE_MODEL,
    TINY_MODEL,
)

PRESETS_DIR = Path(__file__).resolve().parent / "presets"
EVAL_SPLITS = ("train-dev", "demo-dev", "validation", "heldout")  # where checkpoints are chosen
REPORT_SPLITS = ("validation", "heldout")
CPU_DEMO_TIME = "about 11-17 min on 2 CPU cores"  # measured: docs/results.md
DEFAULT_PRESET = "course"


@dataclass
class ModelConfig:
    model_name: str = setting(DEFAULT_MODEL, f"Base model: hub id, local folder, or offline alias ({OFFLINE_MODEL}, {TINY_MODEL}).")
    load_in_4bit: bool = setting(True, "Load the base in 4-bit NF4 with double quantization (bitsandbytes); --no-4bit for full precision.", flag="4bit")
    max_seq_length: int = setting(512, "Longest prompt+answer in tokens; longer questions are shortened, never options or answers.")
    use_unsloth: str = setting("auto", "auto: unsloth on a CUDA GPU when installed, else transformers+peft; yes; no.", choices=("auto", "yes", "no"))


@dataclass
class LoraArgs:
    r: int = setting(16, "LoRA rank.", flag="lora-r")
    alpha: int = setting(16, "LoRA alpha (with rsLoRA the scale is alpha/sqrt(r)).", flag="lora-alpha")
    dropout: float = setting(0.0, "LoRA dropout.", flag="lora-dropout")
    use_rslora: bool = setting(True, "Rank-stabilised LoRA scaling.", flag="rslora")
    target_modules: list = setting(list(LORA_TARGETS), "Projections that get LoRA (comma-separated on the command line).")
    gradient_checkpointing: bool = setting(True, "Recompute activations in the backward pass to save memory.")
    random_state: int = setting(42, "Seed for the LoRA initialisation.")


@dataclass
class DataArgs(BankColumns):
    eval_bank: str | None = setting(None, "A second bank to evaluate on (the same column flags apply).",
                                    metavar="PATH_OR_NAME")
    data_dir: str | None = setting(None, "Folder with train.jsonl / validation.jsonl (HF schema); 'local': $MCQA_DATA_DIR, else ../shared/data/medmcqa beside the repository; unset: the hub (openlifescienceai/medmcqa).")
    train_split: str = setting("train-rest", "Split to train on: train-rest (train minus its dev slice), train, "
                                             "demo-train (offline stand-in: validation minus held-out and demo-dev).")
    eval_split: str = setting("train-dev", "Split for eval loss, letter accuracy and the best checkpoint: a dev "
                                           "slice (train-dev, demo-dev), never the reported rows; validation or "
                                           "heldout is the seed's protocol (recorded as such).")
    completion: str = setting("letter-text", "What the model learns to write after the prompt: letter-text (the "
                                             "course's \"B Aspirin\") or letter (the answer letter alone).",
                              choices=COMPLETIONS)
    report_split: str = setting("validation", "Split of the final report, scored once at the end: validation "
                                              "(the official protocol) or heldout (offline).")
    train_limit: int | None = setting(None, "Use at most this many training rows (after validation).")
    eval_limit: int | None = setting(None, "Use at most this many evaluation rows during training.")
    report_limit: int | None = setting(None, "Rows of the eval split scored for the final report (unset: all).")


@dataclass
class TrainArgs:
    output_dir: str = setting("adapters/medmcqa-lora", "Where the adapter folder is written (checkpoints under checkpoints/).")
    overwrite: bool = setting(False, "Allow writing into an output folder that already holds a different run.")
    resume: bool = setting(False, "Continue from the newest checkpoint in output_dir/checkpoints.")
    learning_rate: float = setting(3e-4, "Peak learning rate.")
    lr_scheduler_type: str = setting("linear", "Learning-rate schedule after warm-up.")
    warmup_steps: int = setting(10, "Linear warm-up steps.")
    per_device_train_batch_size: int = setting(64, "Rows per device per forward pass.", flag="batch-size")
    gradient_accumulation_steps: int = setting(16, "Forward passes per optimizer step.", flag="grad-accum")
    per_device_eval_batch_size: int = setting(64, "Rows per forward pass when evaluating and scoring.", flag="eval-batch-size")
    num_train_epochs: float = setting(2.0, "Passes over the training rows.", flag="epochs")
    max_steps: int = setting(-1, "Stop after this many optimizer steps (-1: run the epochs).")
    eval_steps: int = setting(50, "Evaluate (eval loss + letter accuracy) every N steps.")
    save_steps: int = setting(50, "Checkpoint every N steps (a multiple of eval_steps, for best-model tracking).")
    logging_steps: int = setting(50, "Log the training loss every N steps.")
    save_total_limit: int = setting(1, "Checkpoints kept (the best is always kept too).")
    optim: str = setting("adamw_8bit", "Optimizer (adamw_8bit is bitsandbytes' 8-bit AdamW; adamw_torch without bitsandbytes).")
    weight_decay: float = setting(0.01, "Weight decay.")
    seed: int = setting(0, "Training seed (data order).")
    group_by_length: bool = setting(True, "Batch rows of similar length together to cut padding (same loss, less compute).")
    report_to: str = setting("tensorboard", "Trainer integrations to log to: tensorboard (event files in the adapter "
                                            "folder's tensorboard/), none, wandb...")
    relora_steps: int | None = setting(None, "ReLoRA: every N optimizer steps merge the LoRA into the model, re-initialise it, "
                                        "reset its optimizer state and re-warm the LR (unset: plain LoRA).")
    relora_warmup_steps: int | None = setting(None, "LR warm-up steps after each ReLoRA restart (unset: --warmup-steps).")
    push_to_hub: str | None = setting(None, "Upload the finished adapter folder to this hub repo (owner/name); the token "
                                      "comes from HF_TOKEN or `hf auth login`, never a flag.")


CONFIG_CLASSES = {"model": ModelConfig, "lora": LoraArgs, "data": DataArgs, "train": TrainArgs}


@dataclass
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    lora: LoraArgs = field(default_factory=LoraArgs)
    data: DataArgs = field(default_factory=DataArgs)
    train: TrainArgs = field(default_factory=TrainArgs)
    preset: str = DEFAULT_PRESET
    # Settings the user gave (flags, --config), as group.name: a preset value they silently lose to another
    # setting is refused, not ignored.
    explicit: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))


def _yaml_loader():
    """PyYAML's safe loader, except that a key given twice in one mapping is an error, not silently the last."""
    import yaml

    def unique_keys(loader, node):
        keys = [k for k, _ in node.value if isinstance(k.value, str)]  # scalar keys
        twice = next((k for n, k in enumerate(keys) if k.value in [j.value for j in keys[:n]]), None)
        if twice is not None:
            raise yaml.MarkedYAMLError(problem=f"{twice.value!r} is given twice; keep one",
                                       problem_mark=twice.start_mark)
        return loader.construct_mapping(node)

    loader = type("UniqueKeyLoader", (yaml.SafeLoader,), {})
    loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, unique_keys)
    return loader


def read_settings_file(path: str | Path, origin: str) -> dict:
    """A YAML mapping of settings; a missing, unreadable or malformed file is one SettingsError."""
    import yaml

    path = Path(path).expanduser()
    if not path.is_file():
        raise SettingsError(f"{origin}: no such file {path}")
    try:
        loaded = yaml.load(path.read_text(encoding="utf-8"), Loader=_yaml_loader())
    except (OSError, UnicodeDecodeError) as e:
        raise SettingsError(f"{origin}: cannot read {path} ({type(e).__name__}: {e})") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise SettingsError(f"{origin}: {path} is not valid YAML{where} ({problem}); fix the file") from None
    if loaded is None:
        raise SettingsError(f"{origin}: {path} is empty (no settings); write settings in it (key: value) or drop it")
    if not isinstance(loaded, dict):
        raise SettingsError(f"{origin}: {path} must be a mapping of settings (key: value), got {type(loaded).__name__}")
    return loaded


def _flatten(settings: dict) -> dict:
    """{"train": {"max_steps": 9}, "lora_r": 4} -> {"train.max_steps": 9, "lora_r": 4}; groups are optional."""
    flat = {}
    for key, value in settings.items():
        if key in CONFIG_CLASSES and isinstance(value, dict | None):
            flat.update({f"{key}.{k}": v for k, v in (value or {}).items()})
        else:
            flat[str(key)] = value
    return flat


def _field_group(key: str) -> tuple[str | None, str]:
    """(group, field name) of a key: a field name or its flag's spelling (lora_r, batch-size), with or without
    its group; (None, key) when it names no setting or several."""
    group, _, name = key.rpartition(".")
    spelled = name.replace("_", "-")
    found = [(g, f.name) for g, cls in CONFIG_CLASSES.items() if not group or g == group
             for f in dataclasses.fields(cls) if name == f.name or spelled == flag_name(f)]
    return found[0] if len(found) == 1 else (None, key)


def _settings_problems(cfg: RunConfig, settings: dict, origin: str) -> tuple[list[str], list[str]]:
    """Set every key of `settings` on cfg, converted like its flag: (every unknown key, setting given twice and
    bad value, without `origin`; the flags of the settings refused)."""
    problems, refused, seen = [], [], {}
    unknown = [k for k in _flatten(settings) if _field_group(k)[0] is None]
    if unknown:
        problems.append(f"unknown setting{'s' if len(unknown) > 1 else ''} "
                        f"{', '.join(repr(k) for k in unknown)} (`--help` lists them)")
    for key, value in _flatten(settings).items():
        group, name = _field_group(key)
        if group is None:
            continue
        if (group, name) in seen:  # max_steps and max-steps, or train.max_steps and max_steps
            problems.append(f"{seen[group, name]!r} and {key!r} both set {name}; keep one")
        else:
            seen[group, name] = key
            try:
                setattr(getattr(cfg, group), name, check_value(CONFIG_CLASSES[group], name, value, origin))
                continue
            except SettingsError as e:
                problems.append(str(e).removeprefix(f"{origin}: "))
        refused.append(flag_of(group, name))
    return problems, refused


def _problems_line(found: dict[str, list[str]]) -> str:
    """"ORIGIN: 3 problems: a; b; c" (problems under "" are the whole settings', named last)."""
    named, bare = {o: ps for o, ps in found.items() if o and ps}, found.get("", [])
    count = sum(map(len, named.values())) + len(bare)
    head = f"{count} problems: " if count > 1 else ""
    if len(named) == 1:
        [(origin, problems)] = named.items()
        return f"{origin}: {head}{one_line(problems + bare)}"
    return head + one_line([f"{o}: {p}" for o, ps in named.items() for p in ps] + bare)


def apply_settings(cfg: RunConfig, settings: dict, origin: str) -> None:
    """Set every key of `settings` on cfg, converted like its flag; every unknown key and bad value at once."""
    problems, _ = _settings_problems(cfg, settings, origin)
    if problems:
        raise SettingsError(_problems_line({origin: problems}))


def build_parser(description: str = "") -> Parser:
    """Every field is a flag; only the flags typed appear in the result (defaults come from the layers)."""
    p = Parser(description=description)
    p.add_argument("--preset", default=argparse.SUPPRESS, choices=preset_names(),
                   help="Named recipe, a file in mcqa_core/training/presets/: course (default, the course's GPU "
                        f"recipe), cpu-demo (offline SmolLM2, {CPU_DEMO_TIME}), smoke (tiny random "
                        "Llama, seconds).")
    p.add_argument("--config", default=argparse.SUPPRESS, metavar="RUN.YAML",
                   help="YAML file of settings (flat field names or grouped under model/lora/data/train); flags win.")
    for group, cls in CONFIG_CLASSES.items():
        add_fields(p.add_argument_group(group), cls, prefix=f"{group}.", given_only=True, default_label="course")
    return p


def load_config(argv: list[str] | None = None, description: str = "", check=None) -> RunConfig:
    """defaults < preset < --config YAML < command-line flags. Every problem is refused at once: with `check`
    (checks.config_problems, passed in since checks imports this module), also the ranges and combinations
    of the values that could be read."""
    args = vars(build_parser(description).parse_args(argv))
    preset = args.pop("preset", None)
    yaml_path = args.pop("config", None)
    file_origin = f"--config {yaml_path}"
    file_settings = read_settings_file(yaml_path, file_origin) if yaml_path else {}
    file_preset = file_settings.pop("preset", None)
    preset = preset or file_preset or DEFAULT_PRESET
    found, refused = {file_origin: []}, []
    if preset not in preset_names():  # only a file can name one: the flag has argparse's choices
        found[file_origin].append(f"unknown preset {preset!r}; choose one of {', '.join(preset_names())}")
        preset, check = DEFAULT_PRESET, None
    cfg = RunConfig(preset=preset)
    preset_file = PRESETS_DIR / f"{preset}.yaml"
    layers = ((f"preset {preset} ({preset_file.name})", read_settings_file(preset_file, f"preset {preset}")),
              (file_origin, file_settings), ("command line", args))
    for origin, settings in layers:
        problems, flags = _settings_problems(cfg, settings, origin)
        found.setdefault(origin, []).extend(problems)
        refused += flags
    cfg.explicit = sorted({".".join(g) for k in [*_flatten(file_settings), *args] if (g := _field_group(k))[0]})
    if any(found.values()):
        # a refused value left its earlier one in place: a check problem naming it would mislead
        found[""] = [p for p in (check(cfg) if check else []) if not any(re.search(rf"{re.escape(f)}\b", p)
                                                                          for f in refused)]
        raise SettingsError(_problems_line(found))
    return cfg


def flag_of(group: str, name: str) -> str:
    """The command-line flag of a setting, for messages ("--batch-size")."""
    f = next(f for f in dataclasses.fields(CONFIG_CLASSES[group]) if f.name == name)
    return f"--{flag_name(f)}"
