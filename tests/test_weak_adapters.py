"""Issue 40's weak adapter folders: weights that do not fit their recorded base, a recorded base folder that was
deleted, damaged weights in mcqa-publish, the app's list and the leaderboard. Each is named from the folder's
headers and records in seconds, before any model loads (loading is made to fail here to prove it)."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from mcqa_core.cli import eval_command as eval_cli
from mcqa_core.errors import AdapterError
from mcqa_core.models import inference
from mcqa_core.models.architecture import lora_fit_problem

from .app_helpers import make_tiny_adapter
from .test_weak_inputs import _refused


@pytest.fixture(scope="module")
def template(tmp_path_factory, tiny_model_path) -> Path:
    """One random LoRA on the tiny Llama (recorded base: tiny-random-llama), copied by each test."""
    return make_tiny_adapter(tmp_path_factory.mktemp("template") / "tiny-lora", tiny_model_path)


@pytest.fixture()
def no_loading(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(inference, "load_base_model", refuse)


def _copy(template: Path, to: Path, **run) -> Path:
    shutil.copytree(template, to)
    record = to / "mcqa_run.json"
    record.write_text(json.dumps(json.loads(record.read_text()) | run))
    return to


def _base(tmp_path: Path, tiny_model_path: str, **changes) -> Path:
    """A base folder holding only config.json, the tiny Llama's with `changes`: all the fit check reads."""
    folder = tmp_path / "narrow-base"
    folder.mkdir()
    config = json.loads((Path(tiny_model_path) / "config.json").read_text()) | changes
    (folder / "config.json").write_text(json.dumps(config))
    return folder


# --- weights that do not fit the recorded base --------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes, words",
    [
        ({"hidden_size": 32, "head_dim": 8}, ["has 64 outputs, the base's has 32", "hidden_size 32"]),
        ({"intermediate_size": 96}, ["has 128 inputs, the base's has 96", "intermediate_size 96"]),
        ({"num_hidden_layers": 1}, ["its weights reach layer 1, the base has 1"]),
    ],
)
def test_a_lora_that_does_not_fit_its_base_is_named_from_the_headers_in_seconds(
    tmp_path, tiny_model_path, template, data_dir, capsys, no_loading, changes, words
):
    base = _base(tmp_path, tiny_model_path, **changes)
    adapter = _copy(template, tmp_path / "a", base_model=str(base))
    started = time.perf_counter()
    argv = ["--adapter", adapter, "--data-dir", data_dir, "--output", tmp_path / "r.json"]
    line = _refused(capsys, eval_cli.main, argv, f"does not fit base model '{base}'", *words, "retrain it")
    assert time.perf_counter() - started < 10 and "RuntimeError" not in line
    with pytest.raises(AdapterError, match="does not fit base model"):  # the app and the leaderboard load so
        inference.load_model(adapter, load_in_4bit=False)


def test_the_fit_check_passes_a_fitting_lora_and_skips_what_it_cannot_size(tmp_path, tiny_model_path, template):
    from safetensors.numpy import save_file

    weights = template / "adapter_model.safetensors"
    assert lora_fit_problem(weights, tiny_model_path) is None
    assert lora_fit_problem(weights, "tiny-random-llama") is None
    narrow = _base(tmp_path, tiny_model_path, hidden_size=32, head_dim=8)
    assert lora_fit_problem(weights, str(narrow)) is not None
    # another method's tensors (subset, full: the base's own names) and a mixture of experts are not sized here
    import numpy as np

    subset = tmp_path / "subset.safetensors"
    save_file({"model.layers.1.mlp.down_proj.weight": np.zeros((64, 128), np.float32)}, str(subset))
    assert lora_fit_problem(subset, str(narrow)) is None
    moe = tmp_path / "moe"
    moe.mkdir()
    (moe / "config.json").write_text(json.dumps(json.loads((narrow / "config.json").read_text()) | {"num_experts": 8}))
    assert lora_fit_problem(weights, str(moe)) is None
    assert lora_fit_problem(weights, str(tmp_path / "not-here")) is None  # not on this machine: the loader says


# --- a recorded base folder that was deleted ----------------------------------------------------------------------


def test_a_deleted_base_folder_is_named_with_the_flag_that_points_elsewhere(
    tmp_path, tiny_model_path, template, data_dir, capsys, no_loading
):
    gone = tmp_path / "bases" / "deleted-base"
    adapter = _copy(template, tmp_path / "a", base_model=str(gone))
    argv = ["--adapter", adapter, "--data-dir", data_dir, "--output", tmp_path / "r.json"]
    line = _refused(capsys, eval_cli.main, argv, f"base model folder {gone}, which no longer exists", "--base-model")
    assert "unknown model" not in line
    # --base-model stands in for it: the run goes on to the tokenizer check (with its tokenizer), no model loads
    run = inference.read_adapter_info(adapter, tiny_model_path)
    assert inference.base_for(run, tiny_model_path) == tiny_model_path and run["base_model"] == str(gone)
    argv += ["--base-model", tiny_model_path, "--max-prompt-tokens", "3"]
    _refused(capsys, eval_cli.main, argv, "--max-prompt-tokens 3 cannot hold", f"{tiny_model_path}'s tokenizer")


# --- mcqa-publish checks the folder as mcqa-eval does -------------------------------------------------------------


@pytest.mark.parametrize("cut", [0, 2])
def test_publish_refuses_empty_or_truncated_weights_before_any_hub_call(tmp_path, template, monkeypatch, capsys, cut):
    from mcqa_core.cli import publish_command
    from mcqa_core.shipping import hub_upload

    def no_push(*args, **kwargs):
        raise AssertionError("the hub was called")

    monkeypatch.setattr(hub_upload, "hub_token", lambda: "hf_fake")
    monkeypatch.setattr(hub_upload, "push_folder", no_push)
    adapter = _copy(template, tmp_path / "a")
    weights = adapter / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // cut] if cut else b"")
    why = "is damaged (Error while deserializing header" if cut else "adapter_model.safetensors is empty (0 bytes)"
    _refused(capsys, publish_command.main, [adapter, "me/x"], "cannot publish", why, "retrain it")


# --- the app lists a damaged folder as damaged --------------------------------------------------------------------


def _damaged_folders(tmp_path: Path, template: Path) -> Path:
    root = tmp_path / "adapters"
    _copy(template, root / "good")
    (_copy(template, root / "empty") / "adapter_model.safetensors").write_bytes(b"")
    cut = _copy(template, root / "cut") / "adapter_model.safetensors"
    cut.write_bytes(cut.read_bytes()[:100])
    (_copy(template, root / "record") / "mcqa_run.json").write_text("{not json")
    (_copy(template, root / "config") / "adapter_config.json").write_text("[1, 2]")
    return root


def test_find_adapters_marks_damaged_folders_from_headers_alone(tmp_path, template):
    from mcqa_core.models.adapter_folders import find_adapters
    from mcqa_core.service.adapters import first_choice, picker_order

    found = {a.name: a for a in find_adapters(_damaged_folders(tmp_path, template))}
    assert not found["good"].damaged and found["good"].problem is None
    assert found["empty"].damaged and "empty (0 bytes)" in found["empty"].problem
    assert found["cut"].damaged and "adapter_model.safetensors is damaged" in found["cut"].problem
    assert found["record"].damaged and "unreadable" in found["record"].problem
    assert found["config"].damaged and "adapter_config.json is damaged" in found["config"].problem
    assert first_choice(list(found.values()), "tiny-random-llama").name == "good"
    assert picker_order(list(found.values()), "tiny-random-llama")[0].name == "good"


def test_the_sidebar_lists_a_damaged_adapter_as_damaged_without_its_accuracy(
    monkeypatch, tmp_path, template, tiny_model_path
):
    from app_ui.markdown_text import md_escape

    from .test_app import open_app

    root = tmp_path / "adapters"
    _copy(template, root / "good")
    (_copy(template, root / "broken") / "adapter_model.safetensors").write_bytes(b"")
    for key, value in (("MCQA_APP_BASE_MODEL", "tiny-random-llama"), ("MCQA_APP_4BIT", "0")):
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("MCQA_ADAPTERS_DIR", str(root))
    at = open_app("ask")
    radio = at.sidebar.radio[0]
    labels = dict(zip(radio.options, radio.proto.captions))  # as drawn: markdown-escaped
    assert labels[md_escape("broken (damaged: it will not load)")] == md_escape(
        "adapter_model.safetensors is empty (0 bytes)"
    )
    assert labels["good"].startswith(md_escape("31.2% (95 % CI")) and radio.value == str(root / "good")


# --- the leaderboard skips a bad folder with a line and ranks the rest --------------------------------------------


def test_the_leaderboard_skips_bad_folders_with_a_line_and_ranks_the_rest(
    tmp_path, tiny_model_path, template, data_dir, capsys
):
    root = tmp_path / "adapters"
    _copy(template, root / "good")
    narrow = _base(tmp_path, tiny_model_path, hidden_size=32, head_dim=8)
    _copy(template, root / "misfit", base_model=str(narrow))
    (_copy(template, root / "empty") / "adapter_model.safetensors").write_bytes(b"")
    out = tmp_path / "board"
    argv = ["--leaderboard", "--adapters-dir", root, "--data-dir", data_dir, "--limit", "8", "--no-4bit"]
    capsys.readouterr()
    assert eval_cli.main([str(a) for a in [*argv, "--output", out]]) == 0
    printed = capsys.readouterr()
    assert "[leaderboard] misfit: skipped: adapter" in printed.err and "does not fit base model" in printed.err
    assert "[leaderboard] empty: skipped: adapter_model.safetensors is empty (0 bytes)" in printed.err
    board = json.loads((out / "leaderboard.json").read_text())
    assert {e["name"] for e in board["entries"]} == {"good", "base tiny-random-llama"}
    assert {s["name"] for s in board["skipped"]} == {"misfit", "empty"} and "skipped misfit: " in printed.out
    # with the good one gone too, fewer than two models remain: refused, naming what was skipped
    shutil.rmtree(root / "good")
    _refused(capsys, eval_cli.main, [*argv, "--output", tmp_path / "b2"], "two models at least (2 skipped: ")
