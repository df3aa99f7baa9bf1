"""A setting is a dataclass field that declares its help, its choices and its bounds once; this module reads a
value for it (a typed flag, a YAML value) and checks a value against it. command_line.py turns these fields into
flags; training/checks.py checks a whole run's settings with `field_problems`."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable


def setting(default=dataclasses.MISSING, help: str = "", **meta):
    """A dataclass field that is also a flag. meta: choices, min (inclusive), above and below (exclusive),
    metavar, positional, flag (a command's own short flag name, e.g. mcqa-eval's --4bit)."""
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata={"help": help, **meta})
    return dataclasses.field(default=default, metadata={"help": help, **meta})


def base_type(tp):
    """int for `int | None`, and so on."""
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0] if len(args) == 1 else str
    return typing.get_origin(tp) or tp


def bound_problem(meta, value) -> str | None:
    """What a value breaks of its setting's declared choices and bounds ("must be at least 1, got 0"), or None."""
    if "choices" in meta and isinstance(value, str) and value not in meta["choices"]:
        return f"must be one of {', '.join(meta['choices'])}, got {value!r}"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if not math.isfinite(value):  # inf or nan would train on NaN and write NaN into the run record
        return f"must be a finite number, got {value}"
    if meta.get("min") is not None and value < meta["min"]:
        return f"must be at least {meta['min']}, got {value}"
    if meta.get("above") is not None and not value > meta["above"]:
        return f"must be above {meta['above']}, got {value}"
    if meta.get("below") is not None and not value < meta["below"]:
        return f"must be below {meta['below']}, got {value}"
    return None


def _number(kind, value):
    if isinstance(value, bool):
        raise ValueError(value)
    if kind is float:
        return float(value)
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError(value)
        return int(value)
    return int(str(value).strip())


def _boolean(value) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {value!r}")


def converter(tp, meta: dict, bounds: bool = True) -> Callable[[object], object]:
    """Turns a typed or YAML value into the field's type, or raises ValueError saying what was expected.
    bounds=False leaves min/above/below to a later check of the whole settings (training's checks.py)."""
    kind = base_type(tp)

    def convert(value):
        if kind is bool:
            return _boolean(value)
        if kind is list:
            if isinstance(value, str):
                return [v.strip() for v in value.split(",") if v.strip()]
            if isinstance(value, (list, tuple)):
                return [str(v) for v in value]
            raise ValueError(f"expected a comma-separated list, got {value!r}")
        if kind in (int, float):
            try:
                number = _number(kind, value)
            except (TypeError, ValueError):
                raise ValueError(f"expected {'a whole number' if kind is int else 'a number'}, got {value!r}") from None
            if not math.isfinite(number):
                raise ValueError(f"must be a finite number, got {value!r}")
            if bounds and (problem := bound_problem(meta, number)):
                raise ValueError(problem)
            return number
        value = str(value)
        if "choices" in meta and value not in meta["choices"]:
            raise ValueError(f"choose one of {', '.join(meta['choices'])}, got {value!r}")
        return value

    return convert


def field_problems(obj, name_of: Callable[[dataclasses.Field], str]) -> list[str]:
    """Every value of a settings dataclass that breaks its declared choices or bounds, named by name_of(field)."""
    return [
        f"{name_of(f)} {problem}"
        for f in dataclasses.fields(obj)
        if (problem := bound_problem(f.metadata, getattr(obj, f.name)))
    ]
