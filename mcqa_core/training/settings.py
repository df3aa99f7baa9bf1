"""Training settings read from their layers: every field of setting_groups.py is a flag and a YAML key, and
presets are files. Older spellings (`batch-size`, `lora: {r: 16}`, `--no-4bit`) still load, with a one-line
notice (old_spellings.py).

Precedence, lowest to highest: field defaults (the course recipe) < preset (`presets/NAME.yaml`, read
when the run starts) < `--config run.yaml` < flags.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import typing
from pathlib import Path

from ..command_line import Parser, add_fields, argparse_type, check_value, flag_name
from ..errors import SettingsError, one_line
from ..setting_fields import converter
from ..settings_file import read_settings_file
from .old_spellings import OLD_FLAGS, OLD_NAMES, old_name, tell
from .setting_groups import CONFIG_CLASSES, CPU_DEMO_TIME, DEFAULT_PRESET, RunConfig

PRESETS_DIR = Path(__file__).resolve().parent / "presets"


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))


def _flatten(settings: dict) -> dict:
    """{"train": {"max_steps": 9}, "lora_r": 4} -> {"train.max_steps": 9, "lora_r": 4}; groups are optional."""
    flat = {}
    for key, value in settings.items():
        if key in CONFIG_CLASSES and isinstance(value, dict | None):
            flat.update({f"{key}.{k}": v for k, v in (value or {}).items()})
        else:
            flat[str(key)] = value
    return flat


def field_group(key: str) -> tuple[str | None, str, bool]:
    """(group, field name, whether `key` is an older spelling) of a key, with or without its group;
    (None, key, False) when it names no setting or several."""
    group, _, name = key.rpartition(".")
    field_name = name.replace("-", "_")
    found = [
        g
        for g, cls in CONFIG_CLASSES.items()
        if group in ("", g) and field_name in {f.name for f in dataclasses.fields(cls)}
    ]
    if len(found) == 1:
        return found[0], field_name, field_name != name
    if not found and (old := old_name(group or None, name)):
        return (*old, True)
    return None, key, False


def _settings_problems(cfg: RunConfig, settings: dict, origin: str) -> tuple[list[str], list[str], dict]:
    """Set every key of `settings` on cfg, read like its flag: (every unknown key, setting given twice and
    unreadable value, without `origin`; the flags of the settings refused; older spelling -> field name)."""
    problems, refused, seen, renamed = [], [], {}, {}
    for key, value in settings.items():  # `train: 5` is a group without settings, not an unknown setting
        if key in CONFIG_CLASSES and not isinstance(value, dict | None):
            problems.append(
                f"group {key!r} must be a mapping of settings ({key}: then indented `name: value` lines), "
                f"got {type(value).__name__} {str(value)[:40]!r}"
            )
    unknown = [k for k in _flatten(settings) if field_group(k)[0] is None and k not in CONFIG_CLASSES]
    if unknown:
        problems.append(
            f"unknown setting{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(repr(k) for k in unknown)} (`--help` lists them)"
        )
    for key, value in _flatten(settings).items():
        group, name, old = field_group(key)
        if group is None:
            continue
        if old:
            renamed[key.rpartition(".")[2]] = name
        if (group, name) in seen:  # max_steps and max-steps, or train.max_steps and max_steps
            problems.append(f"{seen[group, name]!r} and {key!r} both set {name}; keep one")
        else:
            seen[group, name] = key
            try:  # bounds are checked with the whole settings (checks.py), to name every problem at once
                value = check_value(CONFIG_CLASSES[group], name, value, origin, bounds=False)
                setattr(getattr(cfg, group), name, value)
                continue
            except SettingsError as e:
                problems.append(str(e).removeprefix(f"{origin}: "))
        refused.append(flag_of(group, name))
    return problems, refused, renamed


def _problems_line(found: dict[str, list[str]]) -> str:
    """ "ORIGIN: 3 problems: a; b; c" (problems under "" are the whole settings', named last)."""
    named, bare = {o: ps for o, ps in found.items() if o and ps}, found.get("", [])
    count = sum(map(len, named.values())) + len(bare)
    head = f"{count} problems: " if count > 1 else ""
    if len(named) == 1:
        [(origin, problems)] = named.items()
        return f"{origin}: {head}{one_line(problems + bare)}"
    return head + one_line([f"{o}: {p}" for o, ps in named.items() for p in ps] + bare)


def apply_settings(cfg: RunConfig, settings: dict, origin: str) -> None:
    """Set every key of `settings` on cfg, read like its flag; every unknown key and bad value at once."""
    problems, _, renamed = _settings_problems(cfg, settings, origin)
    tell(origin, renamed)
    if problems:
        raise SettingsError(_problems_line({origin: problems}))


def build_parser(description: str = "") -> Parser:
    """Every field is a flag; only the flags typed appear in the result (defaults come from the layers)."""
    p = Parser(description=description)
    p.add_argument(
        "--preset",
        default=argparse.SUPPRESS,
        choices=preset_names(),
        help="Named recipe, a file in mcqa_core/training/presets/: course (default, the course's GPU "
        f"recipe), cpu-demo (offline SmolLM2, {CPU_DEMO_TIME}), smoke (tiny random "
        "Llama, seconds).",
    )
    p.add_argument(
        "--config",
        default=argparse.SUPPRESS,
        metavar="RUN.YAML",
        help="YAML file of settings (flat field names or grouped under model/lora/data/train); flags win.",
    )
    for group, cls in CONFIG_CLASSES.items():
        add_fields(p.add_argument_group(group), cls, prefix=f"{group}.", given_only=True, default_label="course")
    for old in OLD_FLAGS:  # not in --help; read like the new flag, then named in a notice
        group, name = OLD_NAMES[old.replace("-", "_")]
        f = next(f for f in dataclasses.fields(CONFIG_CLASSES[group]) if f.name == name)
        hint = typing.get_type_hints(CONFIG_CLASSES[group])[name]
        kw = {"dest": f"{group}.{old.replace('-', '_')}", "default": argparse.SUPPRESS, "help": argparse.SUPPRESS}
        if hint is bool:
            p.add_argument(f"--{old}", action=argparse.BooleanOptionalAction, **kw)
        else:
            p.add_argument(f"--{old}", type=argparse_type(converter(hint, f.metadata, bounds=False)), **kw)
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
    layers = (
        (f"preset {preset} ({preset_file.name})", read_settings_file(preset_file, f"preset {preset}")),
        (file_origin, file_settings),
        ("command line", args),
    )
    for origin, settings in layers:
        problems, flags, renamed = _settings_problems(cfg, settings, origin)
        found.setdefault(origin, []).extend(problems)
        refused += flags
        if origin == "command line":
            renamed = {f"--{old.replace('_', '-')}": f"--{new.replace('_', '-')}" for old, new in renamed.items()}
        tell(origin, renamed)
    cfg.explicit = sorted({f"{g[0]}.{g[1]}" for k in [*_flatten(file_settings), *args] if (g := field_group(k))[0]})
    if any(found.values()):
        # a refused value left its earlier one in place: a check problem naming it would mislead
        found[""] = [
            p for p in (check(cfg) if check else []) if not any(re.search(rf"{re.escape(f)}\b", p) for f in refused)
        ]
        raise SettingsError(_problems_line(found))
    return cfg


def flag_of(group: str, name: str) -> str:
    """The command-line flag of a setting, for messages ("--per-device-train-batch-size")."""
    f = next(f for f in dataclasses.fields(CONFIG_CLASSES[group]) if f.name == name)
    return f"--{flag_name(f)}"
