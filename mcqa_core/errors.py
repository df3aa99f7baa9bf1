"""The library's one error family. Every refusal says what went wrong and what to do next, in one line;
the command-line entry points catch `McqaError` and print it (exit code 2, 3 for a failed hub push)."""

from __future__ import annotations


class McqaError(ValueError):
    """A setting, file, folder or model that cannot be used as given; the message names the next step.

    A ValueError, so callers that only know "bad value" (argparse type functions, older code) still catch it.
    """

    exit_code = 2


class SettingsError(McqaError):
    """A flag, preset or settings file cannot be used."""


class DataError(McqaError):
    """The data cannot be used."""


class ModelError(McqaError):
    """The model cannot be loaded as asked."""


class AdapterError(ModelError):
    """The adapter folder cannot be used; the message names the folder."""


class RunError(McqaError):
    """The training run cannot start (or continue) as asked."""


class ExportError(McqaError):
    """The merge/export cannot run as asked."""


class WriteError(McqaError):
    """Finished work could not be written where asked (a full disk, a folder gone read-only); the message says
    where it was kept instead, or what to free."""


class PublishError(McqaError):
    """The folder could not be pushed; the local folder is untouched."""

    exit_code = 3


def one_line(problems: list[str]) -> str:
    """Several problems as one line, each kept whole."""
    return "; ".join(" ".join(p.split()) for p in problems)


def refuse(error: type[McqaError], action: str, problems: list[str]) -> None:
    """Raise `error("cannot {action}: p1; p2")` when there are problems; do nothing otherwise."""
    if problems:
        raise error(f"cannot {action}: {one_line(problems)}")


def disk_full(error: BaseException | None) -> bool:
    """A write that failed for want of space, whatever raised it: OSError ENOSPC or EDQUOT, or the `tokenizers`
    library's plain Exception("No space left on device (os error 28)"), alone or as the cause of another."""
    import errno

    for _ in range(8):  # the chain of causes, never a loop
        if error is None:
            return False
        if getattr(error, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or "No space left on device" in str(error):
            return True
        error = error.__cause__ or error.__context__
    return False
