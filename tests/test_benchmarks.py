"""Every benchmark in bench/ runs in its quick mode the way a user types it (`python bench/x.py --quick`: the tiny
random Llama, a few rows, seconds) and prints each figure it promises. A benchmark that crashes, or stops printing
one of its figures, fails here instead of rotting until someone needs its numbers. Only the figures' presence and
sanity are checked: speed targets belong to the full runs on an idle machine (docs/speed.md)."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys

import pytest

from mcqa_core.shipping import llama_cpp

from .conftest import REPO

NUMBER = r"(\d+(?:\.\d+)?)"  # a finite figure: "nan" or "inf" does not match


def run_bench(script: str, *args: str, data_dir, timeout: int = 420) -> str:
    env = dict(os.environ, MCQA_DATA_DIR=str(data_dir), TQDM_DISABLE="1", TRANSFORMERS_VERBOSITY="error")
    done = subprocess.run(
        [sys.executable, f"bench/{script}", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, (
        f"bench/{script} {' '.join(args)} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    )
    return done.stdout


def figures(out: str, patterns: dict[str, str]) -> dict[str, tuple[str, ...]]:
    """Each named figure's groups, found by its pattern; every figure missing from `out` is named at once."""
    found = {name: re.search(pattern, out, re.M) for name, pattern in patterns.items()}
    missing = [name for name, match in found.items() if match is None]
    assert not missing, f"figures not printed: {missing}\n--- output ---\n{out}"
    return {name: match.groups() for name, match in found.items()}


def machine_line(out: str) -> None:
    assert re.search(r"^cpu: .+, \d+ cores, \d+ torch threads", out, re.M), f"no machine line:\n{out}"


def roofline(out: str, *paths: str) -> None:
    """The measured matmul peaks, and each path's FLOP/s as a share of its precision's peak that adds up."""
    lines = {"peak": rf"^matmul peak at the model's shapes .*: fp32 {NUMBER} GFLOP/s, bf16 {NUMBER} GFLOP/s"}
    lines |= {
        path: rf"^roofline {re.escape(path)}: {NUMBER} GFLOP/s in (fp32|bf16) \(.+\) = (\d+)% of the \2 matmul peak "
        r"\(target >= 50%\) (OK|MISSED)"
        for path in paths
    }
    got = figures(out, lines)
    peaks = dict(zip(("fp32", "bf16"), map(float, got["peak"])))
    assert all(v > 0 for v in peaks.values())
    for path in paths:
        gflops, precision, share, verdict = got[path]
        g, p = float(gflops), peaks[precision]  # both printed to 0.1: the share can be off by that rounding
        assert 100 * (g - 0.05) / (p + 0.05) - 1 <= int(share) <= 100 * (g + 0.05) / max(p - 0.05, 1e-9) + 1
        assert verdict == ("OK" if int(share) >= 50 else "MISSED")


def test_figures_finds_each_figure_and_names_the_missing_ones():
    out = "speed 12.5 tokens/s\nratio nan x\n"
    assert figures(out, {"speed": rf"speed {NUMBER} tokens/s"}) == {"speed": ("12.5",)}
    with pytest.raises(AssertionError, match=r"\['ratio', 'memory'\]"):
        figures(out, {"ratio": rf"ratio {NUMBER}x", "memory": rf"peak {NUMBER} MiB", "speed": r"speed"})


def test_training_benchmark_quick_compares_a_and_b_on_the_same_work(data_dir):
    out = run_bench("training.py", "--quick", data_dir=data_dir)
    machine_line(out)
    two = rf"\s+{NUMBER}%?\s+{NUMBER}%?\s*$"
    got = figures(
        out,
        {
            "tokens per second": rf"^real tokens / s \(wall clock\){two}",
            "tokens per CPU-second": rf"^real tokens / CPU-second \(all threads\){two}",
            "padding share": rf"^padding share of computed tokens{two}",
            "real / computed": r"^real / computed tokens\s+(\d+)/(\d+)\s+(\d+)/(\d+)\s*$",
            "seconds per step": rf"^wall seconds per optimizer step{two}",
            "first step": rf"^first optimizer step \(s\){two}",
            "start to first step": rf"^process start to first step end \(s\){two}",
            "model load": rf"^model load \(s, conversion cached\){two}",
            "peak memory": rf"^peak resident memory \(MiB\){two}",
            "ratio": rf"^ratio a/b of real tokens per second: {NUMBER}x wall clock, {NUMBER}x per CPU-second",
            "same work": r"^same work: (\d+) vs (\d+) optimizer steps, (\d+) vs (\d+) real tokens",
        },
    )
    assert all(float(v) > 0 for v in got["tokens per second"] + got["peak memory"] + got["ratio"])
    roofline(out, "a", "b")
    # the rest is negative when a loaded machine measured the matmul peak below what the path then reached (the
    # roofline's share is over 100 % then too): the line is still printed, and says so
    rest = r"(-?\d+(?:\.\d+)?)"
    figures(out, {"where the time goes": rf"^a's {NUMBER} s: {NUMBER} s of matmuls at the peak, {rest} s the rest"})
    steps_a, steps_b, real_a, real_b = map(int, got["same work"])
    assert steps_a == steps_b == 2 and real_a == real_b > 0  # a fair comparison: the same rows and steps
    real_a, computed_a, real_b, computed_b = map(int, got["real / computed"])
    assert real_a == real_b and computed_a <= computed_b  # length-split micro-batches pad less, never more


def test_training_benchmark_quick_memory_prints_both_settings(data_dir):
    out = run_bench("training.py", "--quick", "--memory", data_dir=data_dir)
    machine_line(out)
    line = (
        rf"gradient checkpointing {{}}\s+batch 4 x \d+ tokens: peak RSS {NUMBER} MiB \(after load {NUMBER} MiB, "
        rf"\+{NUMBER} MiB for the step\), step {NUMBER} s"
    )
    got = figures(out, {"off": line.format("off"), "on": line.format("on")})
    for peak, after_load, _, _ in got.values():
        assert float(peak) >= float(after_load) > 0


def test_app_latency_benchmark_quick(data_dir, tmp_path):
    out = run_bench("app_latency.py", "--quick", "--json", str(tmp_path / "latency.json"), data_dir=data_dir)
    machine_line(out)
    figures(
        out,
        {
            "load": rf"^model tiny-random-llama .* loaded in {NUMBER} s",
            "warm answers": rf"^first answer {NUMBER} s; 4 warm answers \(mean {NUMBER} prompt tokens\): "
            rf"median {NUMBER} s, p90 {NUMBER} s, max {NUMBER} s -> (meets|MISSES) the",
            "CPU time": rf"^CPU time per warm answer: median {NUMBER} s over \d+ threads",
            "explanations": rf"^explanations: 1 of at most 96 new tokens: median {NUMBER} s, max {NUMBER} s, "
            rf"{NUMBER} words on average; a sentence said twice in [01] of 1",
        },
    )
    saved = json.loads((tmp_path / "latency.json").read_text())
    assert saved["warm"]["n"] == 4 and saved["warm"]["median_s"] > 0


def test_scoring_benchmark_quick(data_dir):
    out = run_bench("scoring.py", "--quick", data_dir=data_dir)
    machine_line(out)
    got = figures(
        out,
        {
            "a": rf"^\(a\) score_rows\s+{NUMBER} s/question",
            "c": rf"^\(c\) bare forward\s+{NUMBER} s/question",
            "b": rf"^\(b\) course generate\s+{NUMBER} s/question",
            "a/b": rf"^a/b: scorer {NUMBER}x faster",
            "c/a": rf"^c/a: scorer at {NUMBER}% of the bare forward",
            "agreement": rf"^the generated text starts with the scorer's letter for (\d+)/8 questions; scorer accuracy "
            rf"{NUMBER}%",
        },
    )
    assert all(float(got[k][0]) > 0 for k in ("a", "b", "c"))
    roofline(out, "(a)", "(c)")
    figures(out, {"where the time goes": rf"^\(a\)'s {NUMBER} s: {NUMBER} s of matmuls at the peak, {NUMBER} s"})


@pytest.fixture(scope="module")
def serving_output(data_dir):
    """One quick run of bench/serving.py for both tests below: (c) runs only where llama-server is installed."""
    if os.environ.get("MCQA_REQUIRE_LLAMA_CPP") == "1" and not _llama_cpp_installed():
        pytest.fail(f"MCQA_REQUIRE_LLAMA_CPP=1 but llama.cpp is not installed: {llama_cpp.INSTALL_HINT}")
    return run_bench("serving.py", "--quick", data_dir=data_dir)


def _llama_cpp_installed() -> bool:
    return llama_cpp.converter() is not None and llama_cpp.server_binary() is not None


def test_serving_benchmark_quick_queue_and_lock(serving_output):
    machine_line(serving_output)
    queue = figures(
        serving_output,
        {
            "one answer": rf"^one answer alone\s+{NUMBER} s",
            "lock": rf"^\(a\) one lock\s+last answer\s+{NUMBER} s \(\s*{NUMBER}x one answer\)\s+{NUMBER} q/s",
            "queue": rf"^\(b\) answer queue \((\d+) batches\)\s+last answer\s+{NUMBER} s",
            "ask behind evaluation, queue": (
                rf"^Ask during a 64-row evaluation \(queue\): waits {NUMBER} s at most over (\d+) asks"
            ),
            "ask behind evaluation, lock": rf"^Ask during a 64-row evaluation \(lock\): waits {NUMBER} s",
        },
    )
    assert int(queue["queue"][0]) >= 1 and int(queue["ask behind evaluation, queue"][1]) >= 1


def test_serving_benchmark_quick_llama_server(serving_output):
    if not _llama_cpp_installed():
        assert "(c) skipped: llama.cpp is not installed" in serving_output
        pytest.skip(f"part (c) needs llama.cpp: {llama_cpp.INSTALL_HINT}")
    figures(
        serving_output,
        {
            "server": rf"^\(c\) llama-server f16, 8 slots\s+last answer\s+{NUMBER} s",
            "one answer (server)": rf"^    one answer alone \(server\)\s+{NUMBER} s",
        },
    )


@pytest.fixture(scope="module")
def lm_eval_output(data_dir):
    """Without lm-eval (CI does not install requirements-bench.txt) quick mode runs our side alone, so the half of
    the script that rots with our code is checked everywhere."""
    return run_bench("lm_eval_compare.py", "--quick", data_dir=data_dir)


def test_lm_eval_benchmark_quick_our_side(lm_eval_output):
    machine_line(lm_eval_output)
    got = figures(
        lm_eval_output,
        {
            "ours": rf"^ours, score_rows, (bf16 \+ fp32 close calls|fp32)\s+{NUMBER} s",
            "accuracy": rf"^accuracy: (?:lm-eval {NUMBER}%, )?ours {NUMBER}%",
        },
    )
    assert float(got["ours"][1]) > 0


def test_lm_eval_benchmark_quick_lm_eval_side(lm_eval_output):
    if importlib.util.find_spec("lm_eval") is None:
        assert "lm-eval skipped (lm-eval is not installed" in lm_eval_output
        pytest.skip("lm-eval is not installed: pip install -r requirements-bench.txt")
    got = figures(
        lm_eval_output,
        {
            "lm-eval": rf"^lm-eval, log-likelihood requests \(float32\s*\)\s+{NUMBER} s",
            "ratio": rf"^ours, score_rows, .*lm-eval/ours {NUMBER}x",
            "prompt": r"^prompt identical on (\d+)/8 questions",
            "same letter": r"^    same letter as lm-eval's argmax on (\d+)/8 questions",
            "accuracy": rf"^accuracy: lm-eval {NUMBER}%, ours {NUMBER}%",
        },
    )
    assert got["prompt"] == ("8",)  # the same text on both sides, to the character


@pytest.fixture(scope="module")
def lm_eval_cloze_output(data_dir):
    """Cloze scoring with two examples before each question: our side everywhere, lm-eval's where installed."""
    return run_bench("lm_eval_compare.py", "--quick", "--scoring", "cloze", "--shots", "2", data_dir=data_dir)


def test_lm_eval_benchmark_quick_cloze_shots_our_side(lm_eval_cloze_output):
    machine_line(lm_eval_cloze_output)
    got = figures(
        lm_eval_cloze_output,
        {
            "header": r"^model .*, cloze scoring, 2 shots from demo-dev \(ids .+\)",
            "ours": rf"^ours, score_options, fp32\s+{NUMBER} s",
            "accuracy": rf"^accuracy: (?:lm-eval acc {NUMBER}%, acc_norm {NUMBER}%; )?ours acc {NUMBER}%, "
            rf"acc_norm {NUMBER}%",
        },
    )
    assert float(got["ours"][0]) > 0


def test_lm_eval_benchmark_quick_cloze_shots_lm_eval_side(lm_eval_cloze_output):
    if importlib.util.find_spec("lm_eval") is None:
        assert "lm-eval skipped (lm-eval is not installed" in lm_eval_cloze_output
        pytest.skip("lm-eval is not installed: pip install -r requirements-bench.txt")
    got = figures(
        lm_eval_cloze_output,
        {
            "lm-eval": rf"^lm-eval, log-likelihood requests \(float32\s*\)\s+{NUMBER} s",
            "prompt": r"^prompt identical on (\d+)/8 questions",
            "ratio": rf"^ours, score_options, fp32\s+{NUMBER} s  lm-eval/ours {NUMBER}x",
            "same acc": rf"^    same acc answer as lm-eval on (\d+)/8 questions.*; largest log-likelihood "
            rf"difference {NUMBER}((?:e[-+]\d+)?) nats",
            "same acc_norm": r"^    same acc_norm answer as lm-eval on (\d+)/8 questions",
            "accuracy": rf"^accuracy: lm-eval acc {NUMBER}%, acc_norm {NUMBER}%; ours acc {NUMBER}%",
        },
    )
    assert got["prompt"] == ("8",)  # lm-eval's few-shot context is ours, to the character
    assert float("".join(got["same acc"][1:])) < 0.01  # fp32 on both sides: the log-likelihoods agree closely


def test_gpu_check_tiny_on_cpu(data_dir, tiny_model_path, tmp_path):
    # One training backend ("ours", the only one with its own branch) and a few rows: the train and score workers,
    # the result plumbing and the table all run; unsloth and the GPU memory figures need a GPU.
    result = tmp_path / "gpu.json"
    out = run_bench(
        "gpu_check.py",
        "--tiny",
        "--rows",
        str(data_dir / "validation.jsonl"),
        "--tokenizer",
        tiny_model_path,
        "--backends",
        "ours",
        "--steps",
        "1",
        "--warmup",
        "1",
        "--batch-size",
        "4",
        "--score-rows",
        "16",
        "--score-batch",
        "8",
        "--json",
        str(result),
        data_dir=data_dir,
    )
    figures(
        out,
        {
            "train": rf"^\| QLoRA train, ours \| {NUMBER} \| (\d+) \| None \| batch 4 x ~{NUMBER} tokens",
            "score": rf"^\| score 16 questions \| {NUMBER} s total \| {NUMBER} rows/s \|",
            "total": rf"^total {NUMBER} s",
        },
    )
    saved = json.loads(result.read_text())
    assert saved["train_ours"]["steps_timed"] == 1 and saved["score"]["rows"] == 16


def test_refusals_benchmark_quick_runs_one_case_per_command(data_dir):
    out = run_bench("refusals.py", "--quick", data_dir=data_dir)
    cases = re.findall(rf"^(\w+): .+?\s{NUMBER}  (.*)$", out, re.M)
    assert sorted(c[0] for c in cases) == ["evaluate", "export", "publish", "train"], out
    assert all(refusal.startswith("error:") for _, _, refusal in cases), out
    figures(out, {"summary": r"^0 of 4 cases missed the target"})


def test_methods_benchmark_quick_measures_each_setup(data_dir):
    """Three of the set-ups (the rest differ only in their tuner, which tests/test_methods.py covers): each its
    own process, with its trainable share, peak memory and tokens/s, and the least-memory line."""
    out = run_bench("methods.py", "--quick", "--setups", "full-fp32,qlora-gc,prefix", data_dir=data_dir)
    machine_line(out)
    row = (
        rf"trainable +([\d,]+) \( *{NUMBER} %\)  peak +{NUMBER} MiB, \+-?\d+ MiB over the loaded model"
        rf" +{NUMBER} tokens/s"
    )
    got = figures(out, {name: rf"^{name} +{row}" for name in ("full-fp32", "qlora-gc", "prefix")})
    full, qlora, prefix = (int(got[n][0].replace(",", "")) for n in ("full-fp32", "qlora-gc", "prefix"))
    assert float(got["full-fp32"][1]) == 100.0 and prefix < qlora < full
    assert all(float(g[2]) > 0 and float(g[3]) > 0 for g in got.values())
    assert re.search(r"^least peak memory: (full-fp32|qlora-gc|prefix) \(\d+ MiB\)", out, re.M)


def test_shot_selection_benchmark_quick(data_dir):
    out = run_bench("shot_selection.py", "--quick", data_dir=data_dir)
    machine_line(out)
    got = figures(
        out,
        {
            "0-shot": rf"^0-shot\s+{NUMBER}% \[{NUMBER}%, {NUMBER}%\]\s+{NUMBER}%$",
            "random": rf"^2-shot random\s+{NUMBER}% \[",
            "similar": rf"^2-shot similar\s+{NUMBER}% \[",
            "pair": rf"^2-shot similar vs 2-shot random: [+-]{NUMBER} points .* p = {NUMBER}",
            "clean": r"^similar: (no question|\d+ questions)",
        },
    )
    low, acc, high = float(got["0-shot"][1]), float(got["0-shot"][0]), float(got["0-shot"][2])
    assert low <= acc <= high
