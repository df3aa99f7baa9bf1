"""One command-line style for every command: flags built from dataclass fields (setting_fields.py), values
read by the same converters on the command line and in YAML files, every refusal one line with its exit code.

Why not `transformers.HfArgumentParser`: it gives every flag a default, so a flag typed by the user cannot be
told from one left alone (training layers defaults < preset < file < flags). The flags are the same: a field's
name with dashes (`--per-device-train-batch-size`), as HfArgumentParser also accepts.
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import functools
import os
import re
import sys
import tempfile
import typing
from collections.abc import Callable
from pathlib import Path

from .errors import McqaError, SettingsError, one_line
from .setting_fields import base_type, converter


class Parser(argparse.ArgumentParser):
    """argparse that reports a bad flag in one line (no usage block), exit code 2."""

    def __init__(self, **kw):
        kw.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(**kw)
        # A value after a flag that reads as a negative number (-5, -1e-3, -inf, -nan) is that flag's value, so that
        # the setting's own check names it; argparse alone takes only -5 and -0.5 and calls the rest a flag.
        self._negative_number_matcher = re.compile(r"^-(\d+\.?\d*|\.\d+)(e[-+]?\d+)?$|^-(inf|infinity|nan)$", re.I)

    def error(self, message):
        self.exit(2, f"error: {message} (see --help)\n")


def flag_name(f: dataclasses.Field) -> str:
    return f.metadata.get("flag", f.name.replace("_", "-"))


def argparse_type(convert):
    def parse(text: str):
        try:
            return convert(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    return parse


def _default(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return f.default
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else dataclasses.MISSING


def add_fields(
    parser: argparse.ArgumentParser,
    cls,
    *,
    prefix: str = "",
    given_only: bool = False,
    default_label: str = "default",
    exclude=None,
) -> None:
    """One flag per field of `cls`. given_only: no defaults, so only the flags typed appear in the result
    (dests are `prefix.name`), and bounds are left to the check of the whole settings; otherwise each flag
    defaults to its field, dests are the field names and the flag's value is checked at once."""
    hints = typing.get_type_hints(cls)
    skip = {f.name for f in dataclasses.fields(exclude)} if exclude else set()  # a base class added on its own
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        meta, tp, default = f.metadata, hints[f.name], _default(f)
        if meta.get("positional"):
            parser.add_argument(f.name, metavar=meta.get("metavar", f.name.upper()), help=meta.get("help"))
            continue
        is_bool = base_type(tp) is bool
        helptext = meta.get("help", "").replace("%", "%%")  # argparse formats help strings with %
        # BooleanOptionalAction adds its own "(default: ...)" when the flag has a default.
        if default not in (dataclasses.MISSING, None) and (given_only or not is_bool):
            helptext += f" ({default_label}: {','.join(default) if isinstance(default, list) else default})"
        kw: dict = {
            "help": helptext,
            "dest": f"{prefix}{f.name}",
            "default": argparse.SUPPRESS if given_only or default is dataclasses.MISSING else default,
        }
        if is_bool:
            parser.add_argument(f"--{flag_name(f)}", action=argparse.BooleanOptionalAction, **kw)
            continue
        parser.add_argument(
            f"--{flag_name(f)}",
            type=argparse_type(converter(tp, meta, bounds=not given_only)),
            metavar=meta.get("metavar", f.name.upper()),
            choices=meta.get("choices"),
            required=default is dataclasses.MISSING,
            **kw,
        )


def check_value(cls, name: str, value, origin: str, bounds: bool = True):
    """A YAML value converted like the same flag would be; SettingsError naming the key otherwise."""
    hints = typing.get_type_hints(cls)
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    optional = type(None) in typing.get_args(hints[name])
    if value is None:
        if optional:
            return None
        raise SettingsError(f"{origin}: {name} needs a value (it has no 'unset')")
    choices = f.metadata.get("choices", ())
    if isinstance(value, bool) and {"yes", "no"} <= set(choices):
        value = "yes" if value else "no"  # YAML reads an unquoted yes/no as a boolean
    try:
        return converter(hints[name], f.metadata, bounds)(value)
    except ValueError as e:
        raise SettingsError(f"{origin}: {name}: {e}") from None


def unwritable_problem(folder: str | os.PathLike, what: str) -> str | None:
    """Why nothing can be written in `folder` (made when missing), or None. Tried with a throw-away folder in
    its nearest existing parent, since os.access says yes to root under /proc; `what` names the flag."""
    probe = Path(folder).expanduser().absolute()
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        return f"{what}: {probe} is a file, so nothing can be written under it; choose another path"
    try:
        os.rmdir(tempfile.mkdtemp(dir=probe, prefix=".mcqa-write-check-"))
    except OSError as e:  # /proc answers ENOENT, /sys EPERM, a read-only disk EROFS
        reason = "" if e.errno == errno.ENOENT else f" ({e.strerror or e})"
        return f"{what}: {probe} is not writable{reason}; choose a folder you can write to"
    return None


def command(body: Callable[[list[str] | None], int]) -> Callable[..., int]:
    """A command's main: a refusal from the library becomes one line on stderr and its exit code; Ctrl-C, one line
    and 130 (no traceback)."""

    @functools.wraps(body)
    def main(argv: list[str] | None = None) -> int:
        try:
            return body(argv)
        except McqaError as e:
            print(f"error: {one_line([str(e)])}", file=sys.stderr)
            return e.exit_code
        except KeyboardInterrupt:  # Ctrl-C before a run's own handler (training/status_files.py), or in any command
            print("\ninterrupted by Ctrl-C", file=sys.stderr)
            return 130

    return main
