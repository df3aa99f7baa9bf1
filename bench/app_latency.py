"""Warm answer latency of the app's Ask path on CPU: load once, ask several questions, print median / p90.

    # the app's offline default (SmolLM2-135M, 4-bit as trained; --4bit no for full precision), 20 questions
    python bench/app_latency.py
    # with a trained adapter (its base and 4-bit setting come from mcqa_run.json)
    python bench/app_latency.py --adapter adapters/cpu-demo --questions 30
    # full precision on CPU instead (faster, but near-tie answers differ from the evaluated 4-bit model)
    python bench/app_latency.py --4bit no
    # quick mode (what tests/test_benchmarks.py runs): the tiny random Llama, 4 questions, seconds
    python bench/app_latency.py --quick

Each answer runs what the Ask button runs (`mcqa_core.service.questions.check_input`, `ask_request.scored_prompt`,
`answer_question`: one forward pass, four letter probabilities). The first answer is reported apart
(warm-up); the target is a median warm answer of at most 0.5 s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere without installing

from bench.machine import cpu_line  # noqa: E402

TARGET_S = 0.5


def latency_summary(seconds: list[float]) -> dict:
    s = sorted(seconds)
    p90 = s[min(len(s) - 1, round(0.9 * (len(s) - 1)))]
    return {"n": len(s), "median_s": statistics.median(s), "p90_s": p90, "max_s": s[-1], "min_s": s[0]}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--adapter", help="adapter folder (default: none, the base model alone)")
    p.add_argument(
        "--base-model",
        default=None,
        help="base model when no adapter is given (default: smollm2-135m; --quick: tiny-random-llama)",
    )
    p.add_argument(
        "--4bit",
        dest="four_bit",
        choices=("auto", "yes", "no"),
        default="auto",
        help="auto: what the app does (as trained: 4-bit for the cpu-demo adapter)",
    )
    p.add_argument(
        "--questions",
        type=int,
        default=None,
        help="warm questions to time, after one warm-up (default: 20; --quick: 4)",
    )
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: the app's choice)")
    p.add_argument("--data-dir", default=None, help="MedMCQA folder (default: ../shared/data/medmcqa)")
    p.add_argument("--json", help="also write the numbers to this file")
    p.add_argument("--quick", action="store_true", help="check the script in seconds (flags given still win)")
    return p


def main(args) -> dict:
    import torch

    from mcqa_core.data.medmcqa import default_data_dir, load_split
    from mcqa_core.data.prompt import OPTION_KEYS
    from mcqa_core.models.inference import load_model  # what the app's cached loader calls
    from mcqa_core.service import adapters, ask_request, questions

    args.base_model = args.base_model or ("tiny-random-llama" if args.quick else "smollm2-135m")
    if args.questions is None:
        args.questions = 4 if args.quick else 20
    # The app's thread count (MCQA_APP_THREADS=auto: torch's default, all cores) unless --threads says otherwise.
    threads = args.threads or adapters.AppSettings.from_env().threads
    if threads:
        torch.set_num_threads(threads)
    rows = load_split("validation", args.data_dir or default_data_dir(), limit=args.questions + 1).rows
    started = time.perf_counter()
    settings = adapters.AppSettings.from_env({"MCQA_APP_4BIT": args.four_bit.replace("yes", "1").replace("no", "0")})
    spec = (
        adapters.adapter_spec(args.adapter, settings)
        if args.adapter
        else adapters.base_spec(adapters.AppSettings(args.base_model, settings.adapters_dir, settings.load_in_4bit))
    )
    loaded = load_model(adapter=spec.adapter, base_model=spec.base_model, load_in_4bit=spec.load_in_4bit)
    load_s = time.perf_counter() - started

    times, cpu, tokens = [], [], []
    for row in rows:
        t0, c0 = time.perf_counter(), time.process_time()
        checked = questions.check_input(row["question"], {k: row[k] for k in OPTION_KEYS if k in row})
        prompt = ask_request.scored_prompt(loaded, checked.row)
        questions.answer_question(loaded, checked.row, allowed=checked.allowed)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        tokens.append(prompt.n_tokens)
    warmup, warm = times[0], times[1:]
    summary = latency_summary(warm)
    cpu_summary = latency_summary(cpu[1:])
    load1 = os.getloadavg()[0]
    result = {
        "model": loaded.describe(),
        "threads": torch.get_num_threads(),
        "load_s": round(load_s, 2),
        "first_answer_s": round(warmup, 3),
        "warm": {k: round(v, 3) if isinstance(v, float) else v for k, v in summary.items()},
        "cpu_s_per_answer": {k: round(v, 3) if isinstance(v, float) else v for k, v in cpu_summary.items()},
        "load_average_1min": round(load1, 2),
        "mean_prompt_tokens": round(sum(tokens[1:]) / len(warm), 1),
        "target_s": TARGET_S,
        "meets_target": summary["median_s"] <= TARGET_S,
    }
    d = result["model"]
    print(cpu_line())
    print(
        f"model {d['base_model']} adapter={d['adapter']} 4-bit={d['load_in_4bit']} device={d['device']} "
        f"threads={result['threads']}, loaded in {load_s:.1f} s"
    )
    print(
        f"first answer {warmup:.3f} s; {summary['n']} warm answers (mean {result['mean_prompt_tokens']} prompt "
        f"tokens): median {summary['median_s']:.3f} s, p90 {summary['p90_s']:.3f} s, max {summary['max_s']:.3f} s "
        f"-> {'meets' if result['meets_target'] else 'MISSES'} the {TARGET_S} s target"
    )
    # On a shared machine wall time includes waiting for a core; CPU time does not. With T threads an
    # answer on an idle machine takes about CPU time / T.
    print(
        f"CPU time per warm answer: median {cpu_summary['median_s']:.3f} s over {result['threads']} threads "
        f"(~{cpu_summary['median_s'] / result['threads']:.3f} s wall on an idle machine); "
        f"1-min load average {load1:.1f} on {os.cpu_count()} cores"
    )
    result["explanations"] = explanation_times(loaded, rows[1 : 2 if args.quick else 6], questions, ask_request)
    e = result["explanations"]
    print(
        f"explanations: {e['n']} of at most {e['budget']} new tokens: median {e['median_s']:.2f} s, max "
        f"{e['max_s']:.2f} s, {e['mean_words']:.0f} words on average; "
        f"a sentence said twice in {e['repeated']} of {e['n']}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return result


def explanation_times(loaded, rows, questions, ask_request) -> dict:
    """What Ask's "Explain" writes for each row's chosen answer, timed whole: seconds, words, and how many repeat a
    sentence (the repetition guard's job)."""
    import re

    from mcqa_core.data.prompt import OPTION_KEYS

    seconds, words, repeated = [], [], 0
    for row in rows:
        checked = questions.check_input(row["question"], {k: row[k] for k in OPTION_KEYS if k in row})
        prompt = ask_request.scored_prompt(loaded, checked.row)
        letter = questions.answer_question(loaded, checked.row, allowed=checked.allowed).pred
        t0 = time.perf_counter()
        text = "".join(questions.stream_explanation(loaded, prompt.text, checked.row, letter))
        seconds.append(time.perf_counter() - t0)
        words.append(len(text.split()))
        sentences = [s.strip().lower() for s in re.split(r"[.!?]", text) if len(s.split()) >= 4]
        repeated += len(sentences) != len(set(sentences))
    return {"n": len(rows), "budget": questions.EXPLANATION_TOKENS, "median_s": statistics.median(seconds),
            "max_s": max(seconds), "mean_words": sum(words) / len(words), "repeated": repeated}  # fmt: skip


if __name__ == "__main__":
    main(build_parser().parse_args())
