"""Shared fixtures: the real MedMCQA rows from ../shared, a tiny random Llama, and SmolLM2 where quality matters.

Converted models are cached under $MCQA_CACHE_DIR (default ~/.cache/mcqa), so only the first run pays.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("MCQA_DATA_DIR", REPO.parent / "shared" / "data" / "medmcqa"))

requires_cuda = pytest.mark.skipif(
    not __import__("torch").cuda.is_available(), reason="needs a CUDA GPU (the unsloth / GPU 4-bit path)"
)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not (DATA_DIR / "validation.jsonl").exists():
        pytest.skip(f"MedMCQA rows not found in {DATA_DIR}; set MCQA_DATA_DIR")
    return DATA_DIR


@pytest.fixture(scope="session")
def validation_rows(data_dir):
    from mcqa_core.data import load_split

    return load_split("validation", data_dir).rows


@pytest.fixture(scope="session")
def tiny_model_path() -> str:
    """A 2-layer random Llama with SmolLM2's real tokenizer (built once, cached)."""
    from mcqa_core.modeling import ensure_tiny_llama

    return str(ensure_tiny_llama())


@pytest.fixture(scope="session")
def tokenizer(tiny_model_path):
    from mcqa_core.modeling import load_tokenizer

    return load_tokenizer(tiny_model_path)


@pytest.fixture()
def tiny_model(tiny_model_path):
    """A fresh full-precision tiny model per test (tests may train it)."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_model_path).eval()


@pytest.fixture(scope="session")
def smoke_adapter(tmp_path_factory, data_dir):
    """One smoke training run shared by the tests that only read its output folder."""
    from mcqa_core.config import load_config
    from mcqa_core.training import run_training

    out = tmp_path_factory.mktemp("smoke") / "adapter"
    cfg = load_config(["--preset", "smoke", "--data-dir", str(data_dir), "--output-dir", str(out)])
    record = run_training(cfg)
    return out, record
