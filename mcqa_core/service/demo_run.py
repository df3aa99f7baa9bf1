"""The demo adapter in one click: the cpu-demo preset started the way the Train page starts a run
(`train_launcher.start`), and how long the whole run took on this machine's kind of CPU, as docs/speed.md and
docs/results.md measured it (the CPU matched by its /proc/cpuinfo flags)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from . import train_launcher
from .preset_catalog import flag

DEMO_PRESET = "cpu-demo"
CPUINFO = Path("/proc/cpuinfo")
INTEL, AMD = "GenuineIntel", "AuthenticAMD"


@dataclass(frozen=True)
class MeasuredTime:
    """One measured cpu-demo run, end to end, and the CPU kind it stands for: every flag in `needs` present, every
    flag in `lacks` absent, the vendor where one is named, and the training precision (None: either)."""

    seconds: float
    machine: str
    source: str
    needs: tuple[str, ...] = ()
    lacks: tuple[str, ...] = ()
    vendor: str | None = None
    precision: str | None = None


# Most specific first: the first that fits this CPU is the one shown.
MEASURED = (
    MeasuredTime(521.5, "2 cores of an Intel Xeon with AMX, in bf16", "docs/speed.md", needs=("amx_bf16",),
                 precision="bf16"),
    MeasuredTime(730.4, "2 cores of an AMD EPYC with AVX512-BF16, in bf16", "docs/speed.md", needs=("avx512_bf16",),
                 lacks=("amx_bf16",), vendor=AMD, precision="bf16"),
    MeasuredTime(888.2, "2 cores of an AMD EPYC with AVX512-BF16, in fp32 (MCQA_CPU_BF16=0)", "docs/speed.md",
                 needs=("avx512_bf16",), lacks=("amx_bf16",), vendor=AMD, precision="fp32"),
    MeasuredTime(648.0, "2 idle cores of an Intel Xeon with AVX512-BF16", "docs/results.md", needs=("avx512_bf16",),
                 vendor=INTEL),
    MeasuredTime(1020.0, "an AMD EPYC without AVX512-BF16", "docs/results.md", lacks=("avx512_bf16",), vendor=AMD),
)  # fmt: skip
NO_MATCH = "no run was measured on this kind of CPU; on 2 x86 cores it took 9-17 min (docs/speed.md, docs/results.md)"


def cpu_kind(cpuinfo: str | None = None) -> tuple[str | None, frozenset[str]]:
    """(vendor, flags) of this machine's first CPU from /proc/cpuinfo; (None, {}) where there is none (not Linux)."""
    if cpuinfo is None:
        try:
            cpuinfo = CPUINFO.read_text()
        except OSError:
            return None, frozenset()
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return fields.get("vendor_id"), frozenset(fields.get("flags", "").split())


def matching_time(vendor: str | None, flags: frozenset[str], precision: str) -> MeasuredTime | None:
    """The measured run for a CPU of this vendor and flags, training in `precision` (bf16 or fp32); None if none."""
    for m in MEASURED:
        if (
            all(f in flags for f in m.needs)
            and not any(f in flags for f in m.lacks)
            and (m.vendor is None or m.vendor == vendor)
            and (m.precision is None or m.precision == precision)
        ):
            return m
    return None


def minutes(seconds: float) -> str:
    whole, rest = divmod(round(seconds), 60)
    return f"{whole} min {rest:02d} s" if rest else f"{whole} min"


def demo_time_line(cpuinfo: str | None = None, precision: str | None = None) -> str:
    """How long cpu-demo took on this kind of CPU, measured, with where it was written down, e.g. "measured 8 min
    42 s on 2 cores of an Intel Xeon with AMX, in bf16 (docs/speed.md); this machine has 2 cores"."""
    if precision is None:
        from ..models.precision_rule import cpu_bf16_allowed

        precision = "bf16" if cpu_bf16_allowed() else "fp32"
    vendor, flags = cpu_kind(cpuinfo)
    m = matching_time(vendor, flags, precision)
    here = f"this machine has {os.cpu_count()} cores"
    if m is None:
        return f"{NO_MATCH}; {here}"
    return f"measured {minutes(m.seconds)} end to end on {m.machine} ({m.source}); {here}"


def demo_argv(adapters_dir: Path) -> list[str]:
    """cpu-demo into adapters/cpu-demo, or a dated folder beside it when that one is taken."""
    out = Path(adapters_dir) / DEMO_PRESET
    if out.exists() and any(out.iterdir()):
        out = out.with_name(f"{DEMO_PRESET}-{datetime.now():%m%d-%H%M}")
    return ["--preset", DEMO_PRESET, *flag("train", "output_dir", out)]


def start_demo(adapters_dir: Path) -> dict:
    """Start the demo run as the Train page would (one run at a time per adapters folder); returns its lock."""
    return train_launcher.start(demo_argv(adapters_dir), adapters_dir)
