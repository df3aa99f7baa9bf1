"""How fast each common mistake is refused: wall seconds from typing the command to its one-line error.

    python bench/refusals.py            # every case once
    python bench/refusals.py --repeat 3 # the best of three (a loaded machine is noisy)
    python bench/refusals.py --quick    # the first case of each command (what tests/test_benchmarks.py runs)

Each case runs as a user would run it (a fresh interpreter, the repository as working folder) and must
exit with code 2 after one stderr line starting "error:". Target: under 3 s each.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TARGET_S = 3.0


def cases(tmp: Path) -> list[tuple[str, list[str]]]:
    a_file = tmp / "a-file"
    a_file.write_text("x")
    bad_yaml = tmp / "bad.yaml"
    bad_yaml.write_text("train: [unclosed\n")
    empty = tmp / "empty"
    empty.mkdir()
    (tmp / "empty.yaml").write_text("# nothing set\n")
    (tmp / "twice.yaml").write_text("max_steps: 3\nmax-steps: 4\n")
    (tmp / "three.yaml").write_text("lerning_rate: 1\nmax_steps: abc\nlora_r: 0\n")
    no_rows = tmp / "no-rows"
    no_rows.mkdir()
    (no_rows / "validation.jsonl").write_text("")
    damaged = tmp / "damaged-adapter"
    damaged.mkdir()
    (damaged / "adapter_config.json").write_text("{not json")
    train = [sys.executable, "train_adapter.py", "--preset", "smoke", "--output-dir", str(tmp / "out")]
    evaluate = [sys.executable, "-m", "mcqa_core.cli.eval_command"]
    return [
        ("train: --learning-rate -1", [*train, "--learning-rate", "-1"]),
        ("train: --num-train-epochs 0 under a max_steps preset", [*train, "--num-train-epochs", "0"]),
        ("train: malformed --config YAML", [*train, "--config", str(bad_yaml)]),
        ("train: --output-dir is a file", [*train[:-1], str(a_file)]),
        ("train: unknown model", [*train, "--model-name", "no-such-model"]),
        ("train: --use-unsloth yes without a GPU", [*train, "--use-unsloth", "yes"]),
        ("train: missing --data-dir", [*train, "--data-dir", str(tmp / "none")]),
        ("train: --data-dir is a file", [*train, "--data-dir", str(a_file)]),
        ("train: --output-dir under /proc", [*train[:-1], "/proc/mcqa-run"]),
        ("train: empty --config YAML", [*train, "--config", str(tmp / "empty.yaml")]),
        ("train: max_steps and max-steps in one file", [*train, "--config", str(tmp / "twice.yaml")]),
        ("train: three problems in one file", [*train, "--config", str(tmp / "three.yaml")]),
        ("evaluate: --output is a folder", [*evaluate, "--base-model", "tiny-random-llama", "--output", str(tmp)]),
        ("evaluate: adapter folder without weights", [*evaluate, "--adapter", str(empty)]),
        ("evaluate: adapter_config.json is not JSON", [*evaluate, "--adapter", str(damaged)]),
        (
            "evaluate: --output under /proc",
            [*evaluate, "--base-model", "tiny-random-llama", "--output", "/proc/r.json"],
        ),
        (
            "evaluate: an empty validation.jsonl",
            [
                *evaluate,
                "--base-model",
                "tiny-random-llama",
                "--data-dir",
                str(no_rows),
                "--output",
                str(tmp / "r.json"),
            ],
        ),
        (
            "export: not an adapter folder",
            [sys.executable, "-m", "mcqa_core.cli.export_command", "--adapter", str(empty), "--out", str(tmp / "m")],
        ),
        (
            "export: --out under a regular file",
            [sys.executable, "-m", "mcqa_core.cli.export_command", "--adapter", str(empty), "--out", str(a_file / "m")],
        ),
        (
            "publish: malformed repo id",
            [sys.executable, "-m", "mcqa_core.cli.publish_command", str(empty), "not a repo"],
        ),
    ]


def quick_cases(all_cases: list[tuple[str, list[str]]]) -> list[tuple[str, list[str]]]:
    """One case per command (the word before the colon), so every command's refusal path still runs."""
    first: dict[str, tuple[str, list[str]]] = {}
    for case in all_cases:
        first.setdefault(case[0].split(":", 1)[0], case)
    return list(first.values())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeat", type=int, default=1, help="Runs per case; the fastest is reported.")
    p.add_argument("--quick", action="store_true", help="Only the first case of each command (train, evaluate, ...).")
    args = p.parse_args(argv)
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        chosen = quick_cases(cases(Path(tmp))) if args.quick else cases(Path(tmp))
        print(f"{'case':45}{'seconds':>9}  refusal")
        for name, command in chosen:
            best, result = float("inf"), None
            for _ in range(args.repeat):
                started = time.perf_counter()
                result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
                best = min(best, time.perf_counter() - started)
            lines = result.stderr.strip().splitlines()
            ok = result.returncode == 2 and len(lines) == 1 and lines[0].startswith("error:") and best < TARGET_S
            failures += not ok
            shown = lines[-1][:90] if lines else "(no stderr)"
            print(f"{name:45}{best:>9.2f}  {'' if ok else 'MISSED: '}{shown}")
    print(f"{failures} of {len(chosen)} cases missed the target (exit 2, one line, under {TARGET_S:.0f} s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
