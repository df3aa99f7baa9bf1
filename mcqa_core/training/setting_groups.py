"""The training settings, one dataclass per concern; settings.py reads them from presets, files and flags.

One spelling per setting: the field's name is the YAML key and the key in `mcqa_run.json`, and `--` plus the
name with dashes is the flag. Names are TRL's and PEFT's where the setting is theirs (`lora_r`,
`per_device_train_batch_size`), so TrainArgs reaches SFTConfig without a copy (run.py). Choices and bounds
are declared on the field and checked in checks.py.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ..data.banks.bank_flags import BankColumns
from ..data.medmcqa import CHECKPOINT_SPLITS, REPORT_SPLITS, SPLITS
from ..data.prompt import COMPLETIONS
from ..models.loading import DEFAULT_MODEL, OFFLINE_MODEL, TINY_MODEL
from ..models.tuners import METHODS
from ..models.tuners.bottleneck_tuner import PLACEMENTS
from ..models.tuners.lora_tuner import LORA_TARGETS
from ..setting_fields import setting

CPU_DEMO_TIME = "minutes on a laptop CPU; docs/training.md has measured times"
DEFAULT_PRESET = "course"


@dataclass
class ModelConfig:
    model_name: str = setting(
        DEFAULT_MODEL, f"Base model: hub id, local folder, or offline alias ({OFFLINE_MODEL}, {TINY_MODEL})."
    )
    load_in_4bit: bool = setting(
        True,
        "Load the base in 4-bit NF4 with double quantization (bitsandbytes); --no-load-in-4bit for full precision.",
    )
    max_seq_length: int = setting(
        512, "Longest prompt+answer in tokens; longer questions are shortened, never options or answers.", min=32
    )
    use_unsloth: str = setting(
        "auto",
        "auto: unsloth on a CUDA GPU when installed, else transformers+peft; yes; no.",
        choices=("auto", "yes", "no"),
    )


@dataclass
class MethodArgs:
    """Which parameters train (models/tuners/, one module per method) and each method's own size; docs/methods.md
    says what each costs."""

    peft_method: str = setting(
        "lora",
        "What trains: lora (QLoRA on a 4-bit base), subset (the top --trainable-layers decoder layers), adapter "
        "(bottleneck adapters), prefix (learned keys/values, --num-virtual-tokens), full (every weight; the "
        "reference). subset, adapter and full need --no-load-in-4bit.",
        choices=METHODS,
    )
    trainable_layers: int = setting(
        2, "subset: how many top decoder layers train (each adds one layer's weights and their optimizer state).", min=1
    )
    adapter_dim: int = setting(
        16, "adapter: bottleneck width (2 x hidden x width weights per adapter; 16 or 32 in the course).", min=1
    )
    adapter_placement: str = setting(
        "pfeiffer",
        "adapter: pfeiffer (after each MLP) or houlsby (after attention and after the MLP: twice the weights).",
        choices=tuple(PLACEMENTS),
    )
    num_virtual_tokens: int = setting(
        20, "prefix: learned positions before every layer's attention (layers x 2 x key/value width each).", min=1
    )


@dataclass
class LoraArgs:
    lora_r: int = setting(16, "LoRA rank.", min=1)
    lora_alpha: int = setting(16, "LoRA alpha (with rsLoRA the scale is alpha/sqrt(r)).", min=1)
    lora_dropout: float = setting(0.0, "LoRA dropout.", min=0, below=1)
    use_rslora: bool = setting(True, "Rank-stabilised LoRA scaling.")
    target_modules: list = setting(
        list(LORA_TARGETS), "Projections that get LoRA (comma-separated on the command line)."
    )
    gradient_checkpointing: bool = setting(True, "Recompute activations in the backward pass to save memory.")
    random_state: int = setting(42, "Seed for the LoRA initialisation.")


@dataclass
class DataArgs(BankColumns):
    eval_bank: str | None = setting(
        None, "A second bank to evaluate on (the same column flags apply).", metavar="PATH_OR_NAME"
    )
    data_dir: str | None = setting(
        None,
        "Folder with train.jsonl / validation.jsonl (HF schema); 'local': "
        "$MCQA_DATA_DIR, else ../shared/data/medmcqa beside the repository; unset: "
        "the hub (openlifescienceai/medmcqa).",
    )
    train_split: str = setting(
        "train-rest",
        "Split to train on: train-rest (train minus its dev slice), train, "
        "demo-train (offline stand-in: validation minus held-out and demo-dev).",
        choices=SPLITS,
    )
    eval_split: str = setting(
        "train-dev",
        "Split for eval loss, letter accuracy and the best checkpoint: a dev "
        "slice (train-dev, demo-dev), never the reported rows; validation or "
        "heldout is the seed's protocol (recorded as such).",
        choices=CHECKPOINT_SPLITS,
    )
    completion: str = setting(
        "letter-text",
        "What the model learns to write after the prompt: letter-text (the "
        'course\'s "B Aspirin") or letter (the answer letter alone).',
        choices=COMPLETIONS,
    )
    report_split: str = setting(
        "validation",
        "Split of the final report, scored once at the end: validation (the official protocol) or heldout (offline).",
        choices=REPORT_SPLITS,
    )
    train_limit: int | None = setting(None, "Use at most this many training rows (after validation).", min=1)
    eval_limit: int | None = setting(None, "Use at most this many evaluation rows during training.", min=1)
    report_limit: int | None = setting(None, "Rows of the eval split scored for the final report (unset: all).", min=1)
    report_base: bool = setting(
        True, "Score the base model (adapter off) on the final report's rows too, with the paired test."
    )


@dataclass
class TrainArgs:
    """Fields named as TRL's SFTConfig's mean what they mean there and reach it as they are; OWN_MEANING lists
    the shared names that mean more here."""

    output_dir: str = setting(
        "adapters/medmcqa-lora", "Where the adapter folder is written (checkpoints under checkpoints/)."
    )
    overwrite: bool = setting(False, "Allow writing into an output folder that already holds a different run.")
    resume: bool = setting(False, "Continue from the newest checkpoint in output_dir/checkpoints.")
    learning_rate: float = setting(3e-4, "Peak learning rate.", above=0)
    lr_scheduler_type: str = setting("linear", "Learning-rate schedule after warm-up.")
    warmup_steps: int = setting(10, "Linear warm-up steps.", min=0)
    per_device_train_batch_size: int = setting(64, "Rows per device per forward pass.", min=1)
    gradient_accumulation_steps: int = setting(16, "Forward passes per optimizer step.", min=1)
    per_device_eval_batch_size: int = setting(64, "Rows per forward pass when evaluating and scoring.", min=1)
    num_train_epochs: float = setting(2.0, "Passes over the training rows.")
    max_steps: int = setting(-1, "Stop after this many optimizer steps (-1: run the epochs).")
    eval_steps: int = setting(50, "Evaluate (eval loss + letter accuracy) every N steps.", min=1)
    save_steps: int = setting(
        50, "Checkpoint every N steps (a multiple of eval_steps, for best-model tracking).", min=1
    )
    logging_steps: int = setting(50, "Log the training loss every N steps.", min=1)
    save_total_limit: int = setting(1, "Checkpoints kept (the best is always kept too).", min=1)
    optim: str = setting(
        "adamw_8bit", "Optimizer (adamw_8bit is bitsandbytes' 8-bit AdamW; adamw_torch without bitsandbytes)."
    )
    weight_decay: float = setting(0.01, "Weight decay.", min=0)
    seed: int = setting(0, "Training seed (data order).")
    group_by_length: bool = setting(
        True, "Batch rows of similar length together to cut padding (same loss, less compute)."
    )
    report_to: str = setting(
        "tensorboard",
        "Experiment trackers, comma-separated: tensorboard (event files in the adapter folder's tensorboard/), "
        "wandb (offline without a login), mlflow (mlruns/ in the adapter folder), or none.",
    )
    relora_steps: int | None = setting(
        None,
        "ReLoRA: every N optimizer steps merge the LoRA into the model, "
        "re-initialise it, reset its optimizer state and re-warm the LR (unset: "
        "plain LoRA).",
        min=1,
    )
    relora_warmup_steps: int | None = setting(
        None, "LR warm-up steps after each ReLoRA restart (unset: --warmup-steps).", min=0
    )
    push_to_hub: str | None = setting(
        None,
        "Upload the finished adapter folder to this hub repo (owner/name); the "
        "token comes from HF_TOKEN or `hf auth login`, never a flag.",
    )


# SFTConfig fields that TrainArgs shares by name but means more by: the adapter folder (checkpoints go below it),
# a repo id (not a yes/no), and length-split micro-batches (training/batching.py).
OWN_MEANING = ("output_dir", "push_to_hub", "group_by_length")

CONFIG_CLASSES = {"model": ModelConfig, "method": MethodArgs, "lora": LoraArgs, "data": DataArgs, "train": TrainArgs}


@dataclass
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    method: MethodArgs = field(default_factory=MethodArgs)
    lora: LoraArgs = field(default_factory=LoraArgs)
    data: DataArgs = field(default_factory=DataArgs)
    train: TrainArgs = field(default_factory=TrainArgs)
    preset: str = DEFAULT_PRESET
    # Settings the user gave (flags, --config), as group.name: a preset value they silently lose to another
    # setting is refused, not ignored.
    explicit: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
