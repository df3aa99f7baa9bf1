"""Training methods as tuners, as PEFT shapes its own: one module per method behind one interface
(`tuner.Tuner`), chosen here by the run's `peft_method` and nowhere else.

No module here imports torch at the top: the settings read `METHODS`, and a command that only checks its
settings answers at once.
"""

from __future__ import annotations

from ...errors import AdapterError
from .bottleneck_tuner import BottleneckTuner
from .full_tuner import FullTuner
from .lora_tuner import LoraTuner
from .prefix_tuner import PrefixTuner
from .subset_tuner import SubsetTuner
from .tuner import Tuner, parameter_counts

TUNERS: dict[str, Tuner] = {
    t.name: t for t in (LoraTuner(), SubsetTuner(), BottleneckTuner(), PrefixTuner(), FullTuner())
}
METHODS = tuple(TUNERS)
DEFAULT_METHOD = "lora"

__all__ = ["DEFAULT_METHOD", "METHODS", "TUNERS", "Tuner", "method_of", "parameter_counts", "tuner_for"]


def tuner_for(method: str | None) -> Tuner:
    """The tuner of a method name (None: LoRA, what every run before `peft_method` trained)."""
    method = method or DEFAULT_METHOD
    if method not in TUNERS:
        raise AdapterError(f"unknown training method {method!r}; this version knows {', '.join(METHODS)}")
    return TUNERS[method]


def method_of(run: dict) -> str:
    """The method an adapter folder's mcqa_run.json records; LoRA for records written before methods existed."""
    settings = run.get("settings") if isinstance(run.get("settings"), dict) else {}
    method = run.get("peft_method") or (settings.get("method") or {}).get("peft_method")
    return method if isinstance(method, str) else DEFAULT_METHOD
