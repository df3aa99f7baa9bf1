"""Shared fixtures: the real MedMCQA rows from ../shared, a tiny random Llama, and SmolLM2 where quality matters.

Converted models are cached under $MCQA_CACHE_DIR (default ~/.cache/mcqa), so only the first run pays.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Most tests compare scores with an exact fp32 reference (1e-5), so they score in fp32 on every CPU, subprocesses
# included; tests/test_scoring.py checks the bf16 default itself (it lifts this where it needs to).
os.environ["MCQA_CPU_BF16"] = "0"
# The app measures a base model alone once at its first start, in a background thread that writes under the reports
# folder; tests that do not test it keep it off (tests/test_first_start.py turns it on, with its own reports folder).
os.environ.setdefault("MCQA_APP_MEASURE_ROWS", "0")


requires_cuda = pytest.mark.skipif(
    not __import__("torch").cuda.is_available(), reason="needs a CUDA GPU (the unsloth / GPU 4-bit path)"
)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real rows (../shared/data/medmcqa or $MCQA_DATA_DIR). Missing rows skip the data tests, except
    under MCQA_REQUIRE_DATA=1 (CI), where a silent skip would hide a broken set-up."""
    from mcqa_core.data.medmcqa import default_data_dir

    found = default_data_dir()
    if found is None or not (Path(found) / "validation.jsonl").exists():
        message = f"MedMCQA rows not found ({found or '../shared/data/medmcqa'}); set MCQA_DATA_DIR"
        if os.environ.get("MCQA_REQUIRE_DATA") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return Path(found)


@pytest.fixture(scope="session")
def validation_rows(data_dir):
    from mcqa_core.data.medmcqa import load_split

    return load_split("validation", data_dir).rows


@pytest.fixture(scope="session")
def tiny_model_path() -> str:
    """A 2-layer random Llama with SmolLM2's real tokenizer (built once, cached)."""
    from mcqa_core.models.offline import ensure_tiny_llama

    return str(ensure_tiny_llama())


@pytest.fixture(scope="session")
def tokenizer(tiny_model_path):
    from mcqa_core.models.loading import load_tokenizer

    return load_tokenizer(tiny_model_path)


@pytest.fixture()
def tiny_model(tiny_model_path):
    """A fresh full-precision tiny model per test (tests may train it)."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_model_path).eval()


@pytest.fixture(scope="session")
def smoke_adapter(tmp_path_factory, data_dir):
    """One smoke training run shared by the tests that only read its output folder."""
    from mcqa_core.training.run import run_training
    from mcqa_core.training.settings import load_config

    out = tmp_path_factory.mktemp("smoke") / "adapter"
    cfg = load_config(["--preset", "smoke", "--data-dir", str(data_dir), "--output-dir", str(out)])
    record = run_training(cfg)
    return out, record


def save_random_lora(base_path, out, run: dict, *, r: int, b_std: float, alpha: int = 16, tokenizer: bool = False):
    """A LoRA of the course's targets on `base_path` with random B ~ N(0, b_std) (seeded; no training), saved
    like train_adapter.py saves one, with `run` as its mcqa_run.json (and, with `tokenizer`, the tokenizer).
    The one maker of random test adapters."""
    import json

    import torch
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    from mcqa_core.models.tuners.lora_tuner import lora_config

    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base_path), lora_config(r=r, alpha=alpha))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * b_std)
    model.save_pretrained(out)
    if tokenizer:
        from mcqa_core.models.loading import load_tokenizer

        load_tokenizer(base_path).save_pretrained(out)
    (out / "mcqa_run.json").write_text(json.dumps(run))
    return out


def pytest_report_header(config):
    from mcqa_core.shipping.llama_cpp import cpu_summary

    return f"cpu: {cpu_summary()}"


def pytest_terminal_summary(terminalreporter):
    # Again at the end, where a CI log's tail shows it: the CPU kind decides which kernels ran.
    from mcqa_core.shipping.llama_cpp import cpu_summary

    terminalreporter.write_line(f"ran on: {cpu_summary()}")
