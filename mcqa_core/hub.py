"""Is the Hugging Face hub reachable? Asked once, in about a second, before a slow retrying download."""

from __future__ import annotations

import functools
import os
import socket


@functools.lru_cache(maxsize=1)
def hub_reachable(timeout: float = 2.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    host = os.environ.get("HF_ENDPOINT", "https://huggingface.co").split("://")[-1].split("/")[0]
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


OFFLINE_HINT = (
    "The Hugging Face hub cannot be reached from this machine. Work offline with the model smollm2-135m "
    "(mcqa-train --model-name smollm2-135m, mcqa-eval --base-model smollm2-135m) and local data "
    "(--data-dir ../shared/data/medmcqa)."
)
