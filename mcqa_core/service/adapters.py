"""Adapters and runs for the app: where it looks (settings from the environment), what it can load (a spec),
the adapter folders it lists, and the few facts about a run that the sidebar shows."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..evaluation.report import measured_interval
from ..models.adapter_folders import SMOKE_PRESET, AdapterFolder, find_adapters  # noqa: F401 (the app's names)
from ..models.loading import OFFLINE_MODEL
from ..models.run_record import measured_accuracy, measured_split, rows_seen_text

REPO = Path(__file__).resolve().parents[2]
MEASURE_ROWS = 200  # held-out rows a base alone is measured on at its first start: ~15 s on 2 idle CPU cores


@dataclass(frozen=True)
class AppSettings:
    """Where the app looks for things; each can be set by an environment variable (tests, deployments)."""

    base_model: str  # MCQA_APP_BASE_MODEL: the model used with "base model only"
    adapters_dir: Path  # MCQA_ADAPTERS_DIR: folders listed in the adapter picker
    # MCQA_APP_4BIT=1/0/auto. auto: as trained (the adapter's record; 4-bit for a base alone), so the app
    # answers with exactly the model the evaluation measured; 0: full precision, faster on CPU, but near-tie
    # answers differ (docs/app.md has the measurements).
    load_in_4bit: bool | None
    # MCQA_APP_THREADS: torch CPU threads. auto: torch's default (all cores); a number pins it (1 on a machine
    # shared with other jobs, where threads waiting on each other make answers slower).
    threads: int | None = None
    # MCQA_APP_BACKEND=local (the model in this process) or openai: answers come from an OpenAI-compatible
    # server (vLLM, llama.cpp's llama-server) at MCQA_APP_ENDPOINT, which serves the picked adapter under its
    # folder's name (or MCQA_APP_SERVED_MODEL) and its base as MCQA_APP_SERVED_BASE_MODEL (docs/serving.md).
    backend: str = "local"
    endpoint: str | None = None
    served_model: str | None = None
    served_base_model: str | None = None
    # MCQA_APP_MEASURE_ROWS: held-out rows a base model alone is measured on once, at its first start, for the
    # line on Ask that says what it does (measured_claim.py); 0 turns the measurement off.
    measure_rows: int = MEASURE_ROWS

    @classmethod
    def from_env(cls, env=None) -> AppSettings:
        env = os.environ if env is None else env
        four_bit = (env.get("MCQA_APP_4BIT") or "auto").strip().lower()
        if four_bit == "auto":
            load_in_4bit = None
        else:
            load_in_4bit = four_bit in ("1", "true", "yes")
        threads = (env.get("MCQA_APP_THREADS") or "auto").strip().lower()
        return cls(
            base_model=env.get("MCQA_APP_BASE_MODEL") or OFFLINE_MODEL,
            # absolute: a training process started from the app runs in the repository, not the server's cwd
            adapters_dir=Path(env.get("MCQA_ADAPTERS_DIR") or REPO / "adapters").expanduser().resolve(),
            load_in_4bit=load_in_4bit,
            threads=None if threads == "auto" else max(1, int(threads)),
            backend=(env.get("MCQA_APP_BACKEND") or "local").strip().lower(),
            endpoint=env.get("MCQA_APP_ENDPOINT") or None,
            served_model=env.get("MCQA_APP_SERVED_MODEL") or None,
            served_base_model=env.get("MCQA_APP_SERVED_BASE_MODEL") or None,
            measure_rows=max(0, int(env.get("MCQA_APP_MEASURE_ROWS") or MEASURE_ROWS)),
        )


@dataclass(frozen=True)
class ModelSpec:
    """What to load: an adapter folder (its base comes from mcqa_run.json) or a base model alone."""

    adapter: str | None
    base_model: str | None
    load_in_4bit: bool | None
    backend: str = "local"  # or "openai": answered by the server the settings name

    def label(self) -> str:
        what = f"adapter {self.adapter}" if self.adapter else f"base model {self.base_model}"
        return what + (" on the server" if self.backend == "openai" else "")


def base_spec(settings: AppSettings, backend: str | None = None) -> ModelSpec:
    return ModelSpec(
        None,
        settings.base_model,
        True if settings.load_in_4bit is None else settings.load_in_4bit,
        backend or settings.backend,
    )


def adapter_spec(folder: str | Path, settings: AppSettings, backend: str | None = None) -> ModelSpec:
    return ModelSpec(str(Path(folder).expanduser()), None, settings.load_in_4bit, backend or settings.backend)


def _lower_bound(a: AdapterFolder) -> float:
    claim = measured_interval(a.run)
    return claim[2][0] if claim else -1.0


def first_choice(adapters: list[AdapterFolder], base_model: str) -> AdapterFolder | None:
    """What a first visit shows: of the ready adapters trained on the app's own base model, the best measured (the
    highest lower end of its 95 % interval, so 30 % of 1,074 questions beats 31 % of 32; the newest on a tie), else
    None (the base alone). A smoke run, a damaged folder, or an adapter on another base, is never the default."""
    real = [a for a in adapters if a.ready and not a.damaged and a.base_model == base_model and not a.machinery_check]
    return max(real, key=_lower_bound, default=None)  # `adapters` is newest first, and max keeps the first


def picker_order(adapters: list[AdapterFolder], base_model: str) -> list[AdapterFolder]:
    """Adapters on the app's base first, then those on another base, smoke runs, then damaged folders; newest first
    within each."""
    return sorted(adapters, key=lambda a: (a.damaged, a.machinery_check, a.base_model != base_model))


def _bank_line(bank: dict | None) -> str | None:
    """A trained-on bank in one line: file, format, size and how its columns were read."""
    if not bank:
        return None
    m = bank.get("mapping") or {}
    options = ", ".join(m.get("option_cols") or []) or m.get("options_col")
    return (
        f"{Path(str(bank.get('source'))).name} ({bank.get('format')}, {bank.get('rows')} questions; question "
        f"{m.get('question')}, options {options}, answer {m.get('answer')} as {m.get('answer_as')})"
    )


def describe_run(run: dict) -> dict:
    """The few facts about an adapter the sidebar shows, from its mcqa_run.json."""
    data = run.get("data") or {}
    accuracy, eval_rows = measured_accuracy(run)
    return {
        "base_model": run.get("base_model"),
        "preset": run.get("preset"),
        "trained_on": rows_seen_text(run),
        "data_source": data.get("source"),
        "eval_split": measured_split(run),  # the final report's split, else the in-training evaluation's
        "bank": _bank_line(data.get("bank")),
        "eval_rows": eval_rows,
        "accuracy": accuracy,
        "finished": run.get("finished"),
    }
