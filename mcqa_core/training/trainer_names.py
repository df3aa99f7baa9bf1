"""transformers' own lists of optimizer names (`--optim`: `transformers.training_args.OptimizerNames`) and learning-
rate schedules (`--lr-scheduler-type`: `transformers.trainer_utils.SchedulerType`), the lists its Trainer checks
them against, but only once a run is set up, after the model has loaded.

Read from the installed transformers' source, not imported: importing either module imports torch and much of
transformers (seconds), and a refused setting is answered in well under that. Should the source ever stop
declaring them as plain `NAME = "value"` lines, the enums are imported instead (slower, same answer);
tests/test_reliability.py checks that both ways agree.
"""

from __future__ import annotations

import ast
import functools
import importlib
import importlib.util
from pathlib import Path

OPTIMIZERS = ("training_args", "OptimizerNames")
SCHEDULERS = ("trainer_utils", "SchedulerType")


@functools.cache
def transformers_names(module: str, enum: str) -> tuple[str, ...]:
    """The values of `transformers.<module>.<enum>`, in their declared order."""
    try:
        spec = importlib.util.find_spec("transformers")
        source = Path(next(iter(spec.submodule_search_locations))) / f"{module}.py"
        tree = ast.parse(source.read_text(encoding="utf-8"))
        body = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == enum).body
        names = tuple(
            n.value.value
            for n in body
            if isinstance(n, ast.Assign) and isinstance(n.value, ast.Constant) and isinstance(n.value.value, str)
        )
        if names:
            return names
    except (AttributeError, OSError, StopIteration, SyntaxError, TypeError, ValueError):
        pass
    return tuple(member.value for member in getattr(importlib.import_module(f"transformers.{module}"), enum))


def name_problem(flag: str, value: str, kind: str, where: tuple[str, str]) -> str | None:
    """A value that is not one of transformers' names, said in one line with the closest names, or None."""
    names = transformers_names(*where)
    if value in names:
        return None
    import difflib

    close = difflib.get_close_matches(value, names, n=3, cutoff=0.5)
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    if len(names) <= 15:
        return f"{flag} {value!r} is not one of transformers' {kind}; {hint}choose one of {', '.join(names)}"
    shown = ", ".join(dict.fromkeys([*close, *names[:4]]))
    return (
        f"{flag} {value!r} is not one of transformers' {kind}; {hint}e.g. {shown} (all {len(names)}: "
        f"transformers.{where[0]}.{where[1]})"
    )


def trainer_name_problems(train) -> list[str]:
    """--optim and --lr-scheduler-type against transformers' lists."""
    found = (
        name_problem("--optim", train.optim, "optimizers", OPTIMIZERS),
        name_problem("--lr-scheduler-type", train.lr_scheduler_type, "learning-rate schedules", SCHEDULERS),
    )
    return [p for p in found if p]
