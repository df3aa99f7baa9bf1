"""Serving many users at once: 20 questions arriving together, and one Ask while another session evaluates.

    # SmolLM2-135M full precision (CPU), the app's scorer settings; needs `make setup-serving` for (c)
    python bench/serving.py
    # as the app loads the base model (4-bit), more users, skip the llama.cpp server
    python bench/serving.py --4bit --users 40 --no-server
    # quick mode (what tests/test_benchmarks.py runs): the tiny random Llama, 4 users, a 64-row evaluation;
    # (c) only where llama-server is installed
    python bench/serving.py --quick

(a) one lock (the app before the answer queue): each session scores its question alone, in turn;
(b) the answer queue (`mcqa_core.service.answer_queue`): questions gathered across sessions, one batch;
(c) the OpenAI backend on llama.cpp's `llama-server` (the same model converted to GGUF f16 by llama.cpp's own
    converter, --parallel slots), each session sending its own request.
Then an Ask while another session evaluates --eval-rows rows: how long it waits with the queue (target: at most
one batch) and, for comparison, with the lock (the whole evaluation).

Targets (2 CPU cores): with the queue, the last of 20 simultaneous answers within 3x the time of one answer.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from bench.machine import cpu_line, load_line  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="base model (default: smollm2-135m; --quick: tiny-random-llama)")
    p.add_argument("--users", type=int, default=None, help="questions arriving at once (default: 20; --quick: 4)")
    p.add_argument(
        "--eval-rows",
        type=int,
        default=None,
        help="rows of the evaluation an Ask waits behind (default: 500; --quick: 64)",
    )
    p.add_argument("--4bit", dest="four_bit", action="store_true", help="4-bit NF4 base, as the app loads it")
    p.add_argument("--no-server", action="store_true", help="skip (c), the llama.cpp server")
    p.add_argument("--skip-lock-eval", action="store_true", help="skip timing an Ask behind a locked evaluation")
    p.add_argument("--data-dir", default=None, help="MedMCQA folder (default: ../shared/data/medmcqa)")
    p.add_argument("--quick", action="store_true", help="check the script in seconds (flags given still win)")
    return p


def fill_defaults(args) -> None:
    chosen = (
        dict(model="tiny-random-llama", users=4, eval_rows=64)
        if args.quick
        else dict(model="smollm2-135m", users=20, eval_rows=500)
    )
    for name, value in chosen.items():
        if getattr(args, name) is None:
            setattr(args, name, value)


def at_once(fns) -> tuple[float, list[float]]:
    """Start all fns together; (seconds to the last result, each one's seconds)."""
    go, each = threading.Event(), [0.0] * len(fns)

    def run(i, fn):
        go.wait()
        t = time.perf_counter()
        fn()
        each[i] = time.perf_counter() - t

    threads = [threading.Thread(target=run, args=(i, fn)) for i, fn in enumerate(fns)]
    for t in threads:
        t.start()
    started = time.perf_counter()
    go.set()
    for t in threads:
        t.join()
    return time.perf_counter() - started, each


def report(name: str, total: float, each: list[float], one: float) -> None:
    print(
        f"{name:<34} last answer {total:6.2f} s ({total / one:4.1f}x one answer)  {len(each) / total:5.1f} q/s  "
        f"median wait {statistics.median(each):.2f} s"
    )


def main(args) -> None:
    from mcqa_core.data.medmcqa import default_data_dir, load_split
    from mcqa_core.evaluation.scorers import LetterScorer
    from mcqa_core.models.inference import load_model
    from mcqa_core.service.answer_queue import AnswerQueue
    from mcqa_core.service.shared_model import APP_BATCH_SIZE, APP_MAX_PROMPT_TOKENS

    fill_defaults(args)
    rows = load_split("heldout", args.data_dir or default_data_dir(), args.users + args.eval_rows).rows
    asks, evaluation = rows[: args.users], rows[args.users :]
    print(
        f"{cpu_line()}; {load_line()}; {args.model} {'4-bit' if args.four_bit else 'full precision'}; "
        f"{args.users} questions at once"
    )
    loaded = load_model(None, args.model, load_in_4bit=args.four_bit)
    local = LetterScorer(loaded, batch_size=APP_BATCH_SIZE, max_prompt_tokens=APP_MAX_PROMPT_TOKENS)
    local.score(evaluation[:2])  # warm-up
    one = min(_timed(lambda r=r: local.score([r])) for r in evaluation[2:5])
    print(f"{'one answer alone':<34} {one:6.2f} s")

    lock = threading.Lock()

    def locked(row):
        with lock:
            local.score([row])

    total, each = at_once([lambda r=r: locked(r) for r in asks])
    report("(a) one lock", total, each, one)

    queue = AnswerQueue(local, batch_size=APP_BATCH_SIZE)
    total, each = at_once([lambda r=r: queue.score([r]) for r in asks])
    report(f"(b) answer queue ({queue.batches} batches)", total, each, one)

    if not args.no_server:
        _server_case(args.model, loaded, asks, evaluation, one)

    # An Ask while another session evaluates: with the queue it waits for the batch that is running.
    batch_s = min(_timed(lambda: local.score(evaluation[:APP_BATCH_SIZE])) for _ in range(2))
    gap = min(1.0, batch_s / 2)  # Asks arrive while the evaluation runs, even where a batch takes milliseconds
    waits = []
    done = threading.Event()
    worker = threading.Thread(target=lambda: (queue.score(evaluation, interactive=False), done.set()))
    started = time.perf_counter()
    worker.start()
    for row in asks[:5]:
        time.sleep(gap)
        if done.is_set():
            break
        waits.append(_timed(lambda row=row: queue.score([row])))
    worker.join()
    eval_s = time.perf_counter() - started
    if not waits:
        raise SystemExit(f"the {len(evaluation)}-row evaluation ended before the first Ask; raise --eval-rows")
    print(
        f"Ask during a {len(evaluation)}-row evaluation (queue): waits {max(waits):.2f} s at most over "
        f"{len(waits)} asks (one batch of {APP_BATCH_SIZE}: {batch_s:.2f} s; one answer alone {one:.2f} s); "
        f"the evaluation took {eval_s:.1f} s"
    )
    if not args.skip_lock_eval:

        def evaluate_locked():
            with lock:
                local.score(evaluation)

        worker = threading.Thread(target=evaluate_locked)
        worker.start()
        time.sleep(gap)
        wait = _timed(lambda: locked(asks[0]))
        worker.join()
        print(f"Ask during a {len(evaluation)}-row evaluation (lock): waits {wait:.2f} s")


def _server_case(model: str, loaded, asks, evaluation, one) -> None:
    from mcqa_core.evaluation.openai_backend import OpenAIScorer
    from mcqa_core.models.loading import resolve_model
    from mcqa_core.shipping import llama_cpp

    if llama_cpp.converter() is None or llama_cpp.server_binary() is None:
        print(f"(c) skipped: llama.cpp is not installed ({llama_cpp.INSTALL_HINT})")
        return
    with tempfile.TemporaryDirectory() as tmp:
        gguf = Path(tmp) / f"{model}-f16.gguf"
        llama_cpp.convert(Path(resolve_model(model)), gguf, "f16", log=lambda *_: None)
        with llama_cpp.LlamaServer(gguf, alias=model, parallel=8, context=8192) as server:
            scorer = OpenAIScorer(server.endpoint, model, tokenizer=loaded.tokenizer)
            scorer.score(evaluation[:2])  # warm-up, on other rows: the server caches a prompt it has seen
            one_served = min(_timed(lambda r=r: scorer.score([r])) for r in evaluation[2:5])
            total, each = at_once([lambda r=r: scorer.score([r]) for r in asks])
            report("(c) llama-server f16, 8 slots", total, each, one)
            print(f"{'    one answer alone (server)':<34} {one_served:6.2f} s")


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


if __name__ == "__main__":
    main(build_parser().parse_args())
