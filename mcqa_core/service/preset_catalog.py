"""The presets a Train form offers and their starting values, read from the preset files: what `--preset NAME`
alone would run; and the training methods it offers, each with only its own settings."""

from __future__ import annotations

import copy
import dataclasses
import functools
from dataclasses import dataclass

from ..models.loading import OFFLINE_MODEL, TINY_MODEL
from ..models.tuners import METHODS, tuner_for
from ..training.setting_groups import CONFIG_CLASSES
from ..training.settings import PRESETS_DIR, RunConfig, flag_of, load_config, preset_names

QUICKEST_FIRST = ("smoke", "cpu-demo", "course")  # the order of the form's choices; the first is preselected


@functools.cache
def _read_preset(name: str) -> RunConfig:
    return load_config(["--preset", name])


def preset_config(name: str) -> RunConfig:
    """The preset file over the field defaults, as a run started with `--preset NAME` and nothing else gets it
    (a copy: the caller may change it)."""
    return copy.deepcopy(_read_preset(name))


def offered_presets() -> list[str]:
    """The presets this machine can run: every one on a CUDA GPU, else those whose model needs no hub."""
    import torch

    gpu = torch.cuda.is_available()
    rank = {name: i for i, name in enumerate(QUICKEST_FIRST)}
    names = sorted(preset_names(), key=lambda name: rank.get(name, len(rank)))
    return [p for p in names if gpu or preset_config(p).model.model_name in (OFFLINE_MODEL, TINY_MODEL)]


def preset_label(name: str) -> str:
    """ "smoke: checks the machinery end to end in seconds (tiny-random-llama)": the file's opening comment, up to
    its first colon, and the preset's model."""
    first = (PRESETS_DIR / f"{name}.yaml").read_text(encoding="utf-8").partition("\n")[0]
    summary = first.lstrip("# ").partition(":")[0].strip() if first.startswith("#") else ""
    model = preset_config(name).model.model_name
    return f"{name}: {summary[:1].lower()}{summary[1:]} ({model})" if summary else f"{name} ({model})"


def flag(group: str, name: str, value) -> list[str]:
    """A setting as the command line spells it: ["--learning-rate", "0.0003"]; a yes/no one as ["--no-load-in-4bit"]."""
    spelled = flag_of(group, name)
    if isinstance(value, bool):
        return [spelled if value else f"--no-{spelled[2:]}"]
    return [spelled, f"{value:g}" if isinstance(value, float) else str(value)]


# Each method's own settings on the form, as (group, field, label); the help, choices and bounds are the field's.
METHOD_SETTINGS = {
    "lora": (("lora", "lora_r", "LoRA rank"),),
    "subset": (("method", "trainable_layers", "Trainable layers"),),
    "adapter": (("method", "adapter_dim", "Adapter width"), ("method", "adapter_placement", "Placement")),
    "prefix": (("method", "num_virtual_tokens", "Virtual tokens"),),
    "full": (),
}


@dataclass(frozen=True)
class FormSetting:
    """One setting as the form draws it: its label, the field's declared help, choices and lower bound, and the
    preset's value."""

    group: str
    name: str
    label: str
    help: str
    value: object
    choices: tuple | None = None
    min: int | None = None


def offered_methods(preset: str) -> tuple[list[str], int]:
    """(every method, the index of the preset's own: lora unless the preset says otherwise)."""
    return list(METHODS), METHODS.index(preset_config(preset).method.peft_method)


def method_label(method: str) -> str:
    """ "subset: subset fine-tuning (top K layers)" """
    return f"{method}: {tuner_for(method).title}"


def setting_help(group: str, name: str) -> str:
    """A setting's declared help ("What trains: lora (QLoRA on a 4-bit base), ...")."""
    return _field(group, name).metadata["help"]


def method_settings(method: str, preset: str) -> list[FormSetting]:
    """The chosen method's own settings (none for full), starting from the preset's values."""
    cfg = preset_config(preset)
    found = []
    for group, name, label in METHOD_SETTINGS[tuner_for(method).name]:
        meta = _field(group, name).metadata
        value = getattr(getattr(cfg, group), name)
        choices = tuple(meta["choices"]) if "choices" in meta else None
        found.append(FormSetting(group, name, label, meta["help"], value, choices, meta.get("min")))
    return found


def sixteen_bit_note(method: str) -> str | None:
    """Why the form loads the base in 16-bit for this method, or None where it may stay 4-bit."""
    tuner = tuner_for(method)
    if not tuner.not_on_4bit:
        return None
    return (
        f"The {tuner.name} method {tuner.not_on_4bit}: this run loads the base without 4-bit quantization "
        "(`--no-load-in-4bit`), so it needs more memory than QLoRA."
    )


def method_argv(preset: str, method: str, values: dict, load_in_4bit: bool) -> list[str]:
    """The method's part of the form's command: `--peft-method`, each of its own settings (`values` by field
    name, else the preset's), and `--no-load-in-4bit` where the method needs a 16-bit base; the 4-bit choice
    otherwise only where it differs from the preset."""
    argv = flag("method", "peft_method", tuner_for(method).name)
    for s in method_settings(method, preset):
        argv += flag(s.group, s.name, values.get(s.name, s.value))
    needs_16_bit = sixteen_bit_note(method) is not None
    four_bit = load_in_4bit and not needs_16_bit
    if needs_16_bit or four_bit != preset_config(preset).model.load_in_4bit:
        argv += flag("model", "load_in_4bit", four_bit)
    return argv


def _field(group: str, name: str) -> dataclasses.Field:
    return next(f for f in dataclasses.fields(CONFIG_CLASSES[group]) if f.name == name)


# The Train form's learning rates: a 1-2-5 ladder (about halves and decades) around the recipe's 3e-4
LEARNING_RATES = (1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2)
