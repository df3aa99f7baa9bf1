"""The presets a Train form offers and their starting values, read from the preset files: what `--preset NAME`
alone would run."""

from __future__ import annotations

import copy
import functools

from ..models.loading import OFFLINE_MODEL, TINY_MODEL
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
    """A setting as the command line spells it: ["--learning-rate", "0.0003"]."""
    return [flag_of(group, name), f"{value:g}" if isinstance(value, float) else str(value)]


# The Train form's learning rates: a 1-2-5 ladder (about halves and decades) around the recipe's 3e-4
LEARNING_RATES = (1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2)
