"""What the loaded model is measured to do, in one sentence for the top of Ask (and a short form for the sidebar):
how often it answers "A", its accuracy with its 95 % interval on the rows it was measured on, and whether the exact
McNemar test tells it apart from always-"A". Read from a report, never guessed: an adapter's own `eval_report.json`
(written at training end), or, for a base model alone, a report of its first `rows` held-out rows measured once
(`measure`, through the shared scorer) and kept under the reports folder, keyed by model, 4-bit and rows, so that
the next start reads it.

The base's measurement runs in a background thread started at most once per server process and report: a visitor
never starts it, and reloading a page never starts it again; its batches take turns with the questions sessions ask.
"""

from __future__ import annotations

import functools
import json
import re
import threading
from dataclasses import dataclass
from pathlib import Path

from ..evaluation.report_types import report_problems
from ..evaluation.stats import significant
from .adapters import MEASURE_ROWS
from .reports import saved_report
from .shared_model import scorer_for

FIRST_START_DIR = "first-start"  # under the reports folder
SPLIT_WORDS = {"heldout": "held-out", "demo-dev": "demo-dev", "validation": "validation"}

_LOCK = threading.Lock()
# report path -> None while it is being measured, else the reason it failed; a path is measured at most once
_STARTED: dict[str, str | None] = {}
_THREADS: dict[str, threading.Thread] = {}


@dataclass(frozen=True)
class Claim:
    """What a page says about the loaded model. `state`: measured, measuring, failed, off (measuring turned off) or
    missing (an adapter without a report). `at_prior`: its accuracy not distinguishable from always-"A" by the exact
    McNemar test (None when unmeasured)."""

    state: str
    sentence: str
    short: str
    at_prior: bool | None = None


def base_report_path(loaded, rows: int) -> Path:
    """Where a base model's first-start report lives: one file per model, 4-bit setting, backend and row count."""
    from ..evaluation.report import reports_dir

    model = re.sub(r"[^A-Za-z0-9._-]+", "-", str(loaded.base_model)).strip("-") or "model"
    served = "-served" if str(loaded.device).startswith("server") else ""
    bits = "4bit" if loaded.load_in_4bit else "full"
    return reports_dir() / FIRST_START_DIR / f"{model}-{bits}{served}-heldout-{rows}.json"


@functools.lru_cache(maxsize=8)
def _read(path: str, stamp: int) -> dict | None:
    try:
        report = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return None if report_problems(report) else report


def read_report(path: Path) -> dict | None:
    """The report at `path` when it is a whole one (read again only when the file changes), else None."""
    try:
        stamp = path.stat().st_mtime_ns
    except OSError:
        return None
    return _read(str(path), stamp)


def at_prior(report: dict) -> bool | None:
    """Whether the report's accuracy is not distinguishable from always-"A" on the same questions (p >= 0.05)."""
    test = report.get("vs_always_a")
    return None if not isinstance(test, dict) else not significant(test)


def _p_text(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.2g}"


def versus_always_a(report: dict) -> str:
    """The paired comparison with always-"A", in words."""
    test = report.get("vs_always_a")
    if not isinstance(test, dict):
        return 'not compared with always-"A"'
    p = f"exact McNemar {_p_text(test['p_value'])}"
    if test["a_only"] == test["b_only"] == 0:  # right on exactly the questions always-"A" gets right
        return f'the same as always-"A" ({p})'
    points = f"{test['difference'] * 100:+.1f} points"
    if not significant(test):
        return f'not distinguishable from always-"A" ({points}, {p})'
    return f'{points} {"above" if test["difference"] > 0 else "below"} always-"A" ({p})'


def claim_sentence(name: str, report: dict) -> str:
    """E.g. 'smollm2-135m (base, no adapter) answers "A" to 100 % of held-out questions; accuracy 31.5 % (95 %
    interval 25.4-38.2 %) on 200 held-out rows, the same as always-"A" (exact McNemar p = 1)'."""
    split = _split_words(report)
    lo, hi = report["accuracy_ci"]
    return (
        f'{name} answers "A" to {report["pred_spread"].get("A", 0.0):.0%} of {split} questions; accuracy '
        f"{report['accuracy']:.1%} (95 % interval {lo:.1%}-{hi:.1%}) on {report['n']:,} {split} rows, "
        f"{versus_always_a(report)}"
    )


def claim_short(report: dict) -> str:
    """The sidebar's form: accuracy, interval, rows, the share of "A", and the prior when it is at it."""
    lo, hi = report["accuracy_ci"]
    prior = "; at the letter prior" if at_prior(report) else ""
    return (
        f"{report['accuracy']:.1%} ({lo:.0%}-{hi:.0%}) on {report['n']:,} {_split_words(report)} rows; "
        f'"A" to {report["pred_spread"].get("A", 0.0):.0%} of questions{prior}'
    )


def _split_words(report: dict) -> str:
    split = (report.get("meta") or {}).get("split") or "heldout"
    return SPLIT_WORDS.get(split, str(split))


def _measured(name: str, report: dict) -> Claim:
    return Claim("measured", claim_sentence(name, report), claim_short(report), at_prior(report))


def claim_for(loaded, name: str, *, data_dir=None, rows: int = MEASURE_ROWS) -> Claim:
    """What `loaded` (called `name` on the page) is measured to do. An adapter: its eval_report.json. A base alone:
    its first-start report, whose measurement starts here (once per process) when it is missing and `rows` > 0."""
    if loaded.has_adapter:
        report, _ = saved_report(loaded.adapter)
        if report is None:
            return Claim(
                "missing",
                f"{name} has no eval_report.json, so what it does on held-out questions is not measured here: "
                "measure it on Evaluate.",
                "no report",
            )
        return _measured(name, report)
    if rows <= 0:
        return Claim(
            "off",
            f"{name} answers; it is not measured here (MCQA_APP_MEASURE_ROWS=0): measure it on Evaluate.",
            "not measured here",
        )
    path = base_report_path(loaded, rows)
    if (report := read_report(path)) is not None:
        return _measured(name, report)
    error = start_measuring(loaded, path, rows, data_dir)
    if error:
        return Claim(
            "failed",
            f"{name} could not be measured ({error}); it is tried once per server start: fix that and restart it, "
            "or measure it on Evaluate.",
            "could not be measured",
        )
    return Claim(
        "measuring",
        f"{name} answers. It is being measured on the first {rows:,} held-out rows, once for this server "
        '(seconds to a minute on a CPU); this line then says how often it answers "A" and how accurate it is.',
        f"being measured on {rows:,} held-out rows",
    )


def start_measuring(loaded, path: Path, rows: int, data_dir=None) -> str | None:
    """Start measuring the base at `path` in a background thread, unless this process already did; returns why an
    earlier attempt failed (None while it runs or once it has written the report)."""
    key = str(Path(path).absolute())
    with _LOCK:
        if key in _STARTED:
            return _STARTED[key]
        _STARTED[key] = None
        thread = threading.Thread(
            target=_measure_in_background, args=(loaded, path, rows, data_dir, key), name="first-start", daemon=True
        )
        _THREADS[key] = thread
    thread.start()
    return None


def _measure_in_background(loaded, path: Path, rows: int, data_dir, key: str) -> None:
    try:
        measure_base(loaded, path, rows, data_dir)
    except Exception as e:  # noqa: BLE001 - no rows, a server that stopped answering, a full disk: said on the page
        with _LOCK:
            _STARTED[key] = f"{type(e).__name__}: {str(e)[:300]}"


def measure_base(loaded, path: Path, rows: int, data_dir=None) -> dict:
    """Measure `loaded` on the first `rows` held-out rows with the project's one protocol and save it at `path`."""
    from ..evaluation.eval_rows import rows_for
    from ..evaluation.measure import measure
    from ..evaluation.protocol import EvalProtocol
    from ..evaluation.report import write_report

    protocol = EvalProtocol(split="heldout", limit=rows)
    report = measure(scorer_for(loaded), rows_for(protocol, data_dir=data_dir), protocol,
                     context={"measured_for": "the app's first start"})  # fmt: skip
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_report(report, path)
    return report


def wait_for_measurement(path: Path, timeout: float | None = None) -> None:
    """Block until the background measurement of `path` (if one was started here) ends: for scripts and tests."""
    thread = _THREADS.get(str(Path(path).absolute()))
    if thread is not None:
        thread.join(timeout)
