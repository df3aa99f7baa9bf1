"""What a visitor may read of the server: text the server wrote (a path, an error, a log line, a report) with its
folders under neutral names (the adapters folder as `adapters`, the data folder as "MedMCQA data (local copy)", the
repository as `.`, the home folder as `~`), the answer server's address as "[address hidden]", and any other
absolute path cut to its last part. The operator reads the text whole (`operator_access.py` says who is which)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..evaluation.report import reports_dir
from ..models.offline import mcqa_cache_dir

REPO = Path(__file__).resolve().parents[2]
DATA_NAME = "MedMCQA data (local copy)"
# What the Browse page names the validation rows read from a data folder.
LOCAL_VALIDATION = "MedMCQA validation (local copy)"
# An absolute path the named folders do not hold: its folders, at the start of the text or after a space, a quote,
# a bracket, "=" or ":" (so "mg/kg" and a URL's path stay whole).
_FOLDERS_OF_A_PATH = re.compile(r"(?:^|(?<=[\s'\"`(\[=:]))/(?:[^\s/'\"`()\[\]]+/)+(?=[^\s/'\"`()\[\]])", re.M)


def _forms(place: str | Path | None) -> list[str]:
    """An absolute folder as it may be spelled: as given (when absolute) and resolved."""
    if not place:
        return []
    path = Path(place).expanduser()
    spelled = [str(path)] if path.is_absolute() else []
    return [*spelled, str(path.resolve())]


@dataclass(frozen=True)
class ServerPlaces:
    """The server's folders and address, each with the name a visitor reads instead."""

    names: tuple[tuple[str, str], ...]

    @classmethod
    def of(
        cls, adapters_dir: str | Path | None = None, data_dir: str | Path | None = None, endpoint: str | None = None
    ) -> ServerPlaces:
        named = [
            (data_dir, DATA_NAME),
            (adapters_dir, "adapters"),
            (reports_dir(), "reports"),
            (mcqa_cache_dir(), "the model cache"),
            (REPO, "."),
            (Path.home(), "~"),
        ]
        names = {form: name for place, name in named for form in _forms(place) if form != "/"}
        if endpoint:
            names[endpoint.rstrip("/")] = "[address hidden]"
        # Longest first: a folder inside another (the adapters inside the repository) keeps its own name.
        return cls(tuple(sorted(names.items(), key=lambda kv: len(kv[0]), reverse=True)))

    def hide(self, text: object) -> str:
        """`text` as a visitor reads it."""
        text = str(text)
        if self.names:
            named = dict(self.names)
            pattern = "|".join(re.escape(place) for place, _ in self.names)
            text = re.sub(f"(?<![\\w.-])(?:{pattern})(?![\\w.-])", lambda m: named[m.group(0)], text)
        return _FOLDERS_OF_A_PATH.sub("…/", text)

    def source(self, source: str) -> str:
        """Where validation rows came from (`LoadedSplit.source`), as a visitor reads it: a data folder is named, the
        hub's name and an uploaded bank's file name stay."""
        return LOCAL_VALIDATION if Path(source).is_absolute() else self.hide(source)
