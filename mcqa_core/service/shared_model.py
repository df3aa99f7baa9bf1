"""The one model the app process serves to every session: loaded from a spec (in process or through a server),
warmed up, and shared behind one `AnswerQueue` (`scorer_for`) that batches the questions of all sessions."""

from __future__ import annotations

import threading
import time
import weakref
from pathlib import Path

from ..errors import SettingsError
from ..evaluation.scorers import ClozeScorer, LetterScorer
from ..models import inference
from .answer_queue import AnswerQueue

# The app scores prompts of at most this many tokens; longer questions are shortened (never an option).
APP_MAX_PROMPT_TOKENS = 512
APP_BATCH_SIZE = 16  # questions per forward pass, gathered across sessions
_QUEUE_LOCK = threading.Lock()
# loaded model (by identity) -> the scorer every session shares for it; kept here, not on the model's object
_SHARED: dict[int, object] = {}


def scorer_for(loaded, kind: str = "letter"):
    """The scorer every session shares for a loaded model, of `kind` (letter or cloze): a server backend's own
    scorer (letter only), or one `AnswerQueue` in front of the in-process model (made on first use) that batches
    both kinds in turns."""
    with _QUEUE_LOCK:
        if id(loaded) not in _SHARED:
            kw = dict(batch_size=APP_BATCH_SIZE, max_prompt_tokens=APP_MAX_PROMPT_TOKENS)
            _share(
                loaded, AnswerQueue(LetterScorer(loaded, **kw), ClozeScorer(loaded, **kw), batch_size=APP_BATCH_SIZE)
            )
        shared = _SHARED[id(loaded)]
    if isinstance(shared, AnswerQueue):
        return shared.of_kind(kind)
    if kind != shared.kind:
        raise SettingsError(f"{kind} scoring reads each option's tokens from the model: load it in this process")
    return shared


def _share(loaded, scorer) -> None:
    _SHARED[id(loaded)] = scorer
    weakref.finalize(loaded, _SHARED.pop, id(loaded), None)  # a model the app let go takes its queue with it


def load_spec(spec, threads: int | None = None, settings=None):
    """Load what an adapters.ModelSpec names (slow: seconds to a minute). The app caches it per process.

    `threads` sets torch's CPU threads for the process (the app's one model serves every session). For a spec
    with `backend == "openai"` only the tokenizer is loaded here and the server `settings` names answers.
    """
    if spec.backend == "openai":
        return load_served(spec, settings)
    if threads:
        import torch

        torch.set_num_threads(threads)

    loaded = inference.load_model(adapter=spec.adapter, base_model=spec.base_model, load_in_4bit=spec.load_in_4bit)
    warm_up(loaded)
    return loaded


def can_compare(loaded) -> bool:
    """Whether the base model's answer can be shown beside the adapter's (an adapter in process, or a server
    that also serves the base)."""
    return loaded.has_adapter and scorer_for(loaded).has_base


def load_served(spec, settings):
    """A `LoadedModel` without weights whose answers come from the OpenAI-compatible server the settings name;
    refused in one line, before anything is shown as loaded, when the server is down or lacks the model."""
    from ..evaluation.openai_backend import connect

    started = time.perf_counter()
    run = inference.read_adapter_info(spec.adapter) if spec.adapter else {}
    # An adapter is served under its folder's name (vLLM: --lora-modules NAME=adapters/NAME) unless set otherwise.
    name = (settings.served_model or Path(spec.adapter).name) if spec.adapter else settings.served_base_model
    if not settings.endpoint or not name:
        missing = "MCQA_APP_ENDPOINT" if not settings.endpoint else "MCQA_APP_SERVED_BASE_MODEL"
        raise SettingsError(f"the openai backend needs {missing} (docs/serving.md)")
    base = run.get("base_model") or spec.base_model
    scorer = connect(
        settings.endpoint,
        name,
        tokenizer_of=base,
        max_prompt_tokens=APP_MAX_PROMPT_TOKENS,
        base_model=settings.served_base_model if spec.adapter else None,
    )
    loaded = inference.LoadedModel(
        None,
        scorer.tokenizer,
        base,
        spec.adapter,
        False,
        f"server {scorer.endpoint}",
        time.perf_counter() - started,
        run,
    )
    with _QUEUE_LOCK:
        _share(loaded, scorer)
    return loaded


WARM_UP_ROW = {"question": "Which organ pumps blood?", "opa": "Heart", "opb": "Lung", "opc": "Liver", "opd": "Skin"}


def warm_up(loaded) -> None:
    """One throwaway answer, so the first user's answer is as fast as every later one (the first forward
    pass pays for kernel selection and memory allocation: seconds on CPU)."""
    scorer_for(loaded).score([WARM_UP_ROW])
