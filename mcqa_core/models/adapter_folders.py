"""The adapter folders under an adapters directory: each with its run record, whether it is ready to load, and why
not; the app's picker and `mcqa-eval --leaderboard` both list them from here."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import AdapterError
from .run_record import measured_accuracy, read_run

SMOKE_PRESET = "smoke"  # the preset name training records in mcqa_run.json


@dataclass
class AdapterFolder:
    path: Path
    run: dict  # mcqa_run.json, {} when absent or unreadable
    ready: bool  # has adapter_config.json at the top (a run still training has only checkpoints/)
    problem: str | None = None
    damaged: bool = False  # ready, but its record, config or weights are unusable (`problem` says which)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def accuracy(self) -> float | None:
        return measured_accuracy(self.run)[0]

    @property
    def base_model(self) -> str | None:
        return self.run.get("base_model")

    @property
    def machinery_check(self) -> bool:
        """A smoke run: it proves the pipeline runs, and its number says nothing about medicine."""
        return self.run.get("preset") == SMOKE_PRESET


def find_adapters(adapters_dir: str | Path) -> list[AdapterFolder]:
    """The adapter folders directly under `adapters_dir`, newest first; unfinished ones marked not ready, damaged
    ones (an unreadable record or config, missing or truncated weights: a header read, no tensor) marked damaged."""
    from .inference import adapter_damage

    root = Path(adapters_dir).expanduser()
    if not root.is_dir():
        return []
    found = []
    for folder in sorted(
        (p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    ):
        ready = (folder / "adapter_config.json").exists()
        try:
            run, problem = read_run(folder), adapter_damage(folder) if ready else None
        except AdapterError as e:
            run, problem = {}, str(e)
        damaged = ready and problem is not None
        if not run and problem is None:
            problem = (
                "no mcqa_run.json (trained elsewhere?)"
                if ready
                else "no adapter_config.json yet (still training, or not an adapter folder)"
            )
        found.append(AdapterFolder(folder, run, ready, problem, damaged))
    return found
