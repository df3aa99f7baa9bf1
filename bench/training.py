"""Training throughput and memory: our trainer against a plain Hugging Face loop, in one run.

Same model (SmolLM2-135M in 4-bit NF4 with the recipe's LoRA: r 16, alpha 16, rsLoRA, all seven
projections), same rows (demo-train), same optimizer and learning rate, same number of optimizer steps:

  (a) our path: `MCQATrainer` (TRL SFTTrainer) as `run_training` builds it: each step's rows split
      into micro-batches by length (mcqa_core.training.batching), loss computed on label tokens only;
  (b) a plain `transformers.Trainer` + PEFT loop: random order, each micro-batch padded to its
      longest row, full logits.

Each configuration runs in its own process, so peak resident memory is its own. The SmolLM2
conversion from GGUF is cached (~/.cache/mcqa) before either starts, and not counted.

    # a vs b, cpu-demo shapes (8 rows x 4 accumulation, max 256 tokens), 4 optimizer steps each (~5 min)
    python bench/training.py

    # more steps, other shapes
    python bench/training.py --steps 8 --batch-size 8 --grad-accum 4

    # quick mode (what tests/test_benchmarks.py runs): the tiny random Llama, 2 steps of 4 x 2 rows, seconds
    python bench/training.py --quick
    python bench/training.py --quick --memory

    # memory of the course recipe's shapes (512 tokens, 64 rows a micro-batch) with gradient
    # checkpointing on and off: one optimizer step on the longest rows
    python bench/training.py --memory --batch-size 64

Both train in the precision a real run chooses (`training_precision`: bf16 on a CPU with native bf16, else fp32;
MCQA_CPU_BF16=0 for fp32).

Targets (2 CPU cores): real (non-pad) tokens per second of a at least 1.3x b; a at least 50% of the machine's
matmul peak in its precision (the roofline lines: the decoder's linear-layer FLOPs over computed tokens, against
the measured peak of `F.linear` at the model's MLP shape).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STARTED = time.time()
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script from anywhere

from bench.machine import (  # noqa: E402
    cpu_line,
    linear_macs_per_token,
    load_line,
    matmul_peak,
    mlp_shape,
    peak_line,
    roofline_line,
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="Base model (default: smollm2-135m; --quick: tiny-random-llama).")
    p.add_argument("--data-dir", default=None, help="MedMCQA folder (default: the local one, as cpu-demo).")
    p.add_argument("--steps", type=int, default=None, help="Optimizer steps for each of a and b (default: 4).")
    p.add_argument(
        "--rows", type=int, default=None, help="Training rows (default: exactly steps x batch size x accumulation)."
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="Rows per micro-batch (default: 8, cpu-demo; with --memory: 64, the course recipe).",
    )
    p.add_argument("--grad-accum", type=int, default=None, help="Micro-batches per optimizer step (default: 4).")
    p.add_argument(
        "--max-seq-length",
        type=int,
        default=None,
        help="Tokens per row at most (default: 256, cpu-demo; with --memory: 512, the course recipe).",
    )
    p.add_argument(
        "--gradient-checkpointing",
        action="store_true",
        help="Recompute activations in a and b (default off, as cpu-demo).",
    )
    p.add_argument(
        "--memory",
        action="store_true",
        help="Instead of a vs b: peak memory of one optimizer step on the longest rows, gradient "
        "checkpointing on and off.",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="Check the script in seconds: tiny-random-llama, 2 steps of 4 rows x 2 (with --memory: one "
        "step on the 4 longest rows); flags given explicitly still win.",
    )
    p.add_argument("--only", choices=("a", "b", "mem-gc", "mem-nogc"), help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    return p


# ----------------------------------------------------------------------------------------- helpers

DEFAULTS = {"model": "smollm2-135m", "steps": 4, "batch_size": 8, "grad_accum": 4, "max_seq_length": 256}
MEMORY_DEFAULTS = {"batch_size": 64, "max_seq_length": 512}  # the course recipe's micro-batch
QUICK = {"model": "tiny-random-llama", "steps": 2, "batch_size": 4, "grad_accum": 2}


def fill_defaults(args) -> None:
    """Unset flags take the mode's values: quick over memory over the cpu-demo shapes."""
    chosen = {**DEFAULTS, **(MEMORY_DEFAULTS if args.memory else {}), **(QUICK if args.quick else {})}
    for name, value in chosen.items():
        if getattr(args, name) is None:
            setattr(args, name, value)


def _peak_rss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _cpu_seconds() -> float:
    """User + system CPU time of this process, all threads: what the work cost, whatever else runs."""
    import resource

    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _rss_mib() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def _config(args, gradient_checkpointing: bool):
    from mcqa_core.training.settings import load_config

    cfg = load_config(
        [
            "--preset",
            "cpu-demo",
            "--output-dir",
            tempfile.mkdtemp(prefix="bench-train-"),
            "--per-device-train-batch-size",
            str(args.batch_size),
            "--gradient-accumulation-steps",
            str(args.grad_accum),
            "--max-seq-length",
            str(args.max_seq_length),
            "--max-steps",
            str(args.steps),
            "--warmup-steps",
            "1",
        ]
        + (["--data-dir", args.data_dir] if args.data_dir else [])
    )
    cfg.lora.gradient_checkpointing = gradient_checkpointing
    cfg.model.model_name = args.model
    return cfg


def _encoded_rows(cfg, tok, rows: int):
    from mcqa_core.data.features import encode_rows
    from mcqa_core.data.medmcqa import load_split

    split = load_split(cfg.data.train_split, cfg.data.data_dir, rows)
    enc = encode_rows(tok, split.rows, cfg.model.max_seq_length)
    return enc


class _Counting:
    """Wraps a collator: counts real (attention-mask) and computed (padded) tokens of every batch."""

    def __init__(self, collator):
        self.collator, self.real, self.computed, self.batches = collator, 0, 0, 0

    def __call__(self, features):
        batch = self.collator(features)
        self.real += int(batch["attention_mask"].sum())
        self.computed += batch["input_ids"].numel()
        self.batches += 1
        return batch


def _timing_callback():
    from transformers import TrainerCallback

    class StepTimes(TrainerCallback):
        def __init__(self):
            self.begin, self.steps = None, []

        def on_train_begin(self, args, state, control, **kw):
            self.begin, self.cpu_begin = time.time(), _cpu_seconds()

        def on_step_end(self, args, state, control, **kw):
            self.steps.append(time.time())
            self.cpu_end = _cpu_seconds()

    return StepTimes()


def _measure(trainer, counter, load_seconds: float, extra: dict) -> dict:
    from mcqa_core.models.precision_rule import training_precision

    times = _timing_callback()
    trainer.add_callback(times)
    trainer.train()
    shape = {  # after training: the Trainer turns gradient checkpointing on when it starts
        "precision": training_precision()[0],
        "device": next(trainer.model.parameters()).device.type,
        "mlp_shape": mlp_shape(trainer.model),
        "linear_macs_per_token": linear_macs_per_token(trainer.model),
        "gradient_checkpointing": bool(getattr(trainer.model, "is_gradient_checkpointing", False)),
    }
    steps = len(times.steps)
    wall = times.steps[-1] - times.begin
    return {
        **extra,
        **shape,
        "steps": steps,
        "micro_batches": counter.batches,
        "real_tokens": counter.real,
        "computed_tokens": counter.computed,
        "padding_share": 1 - counter.real / counter.computed,
        "train_seconds": wall,
        "seconds_per_step": wall / steps,
        "real_tokens_per_second": counter.real / wall,
        "cpu_seconds": times.cpu_end - times.cpu_begin,
        "real_tokens_per_cpu_second": counter.real / (times.cpu_end - times.cpu_begin),
        "first_step_seconds": times.steps[0] - times.begin,
        "start_to_first_step_seconds": times.steps[0] - STARTED,
        "load_seconds": load_seconds,
        "peak_rss_mib": _peak_rss_mib(),
    }


# ----------------------------------------------------------------------------------- configurations


def _load(args):
    """What both configurations start from: the same settings, model load (timed) and encoded rows."""
    import transformers

    from mcqa_core.models.loading import load_for_training

    cfg = _config(args, args.gradient_checkpointing)
    transformers.set_seed(cfg.train.seed)
    started = time.time()
    model, tok, _ = load_for_training(cfg.model, cfg.lora)
    load_seconds = time.time() - started
    return cfg, model, tok, load_seconds, _encoded_rows(cfg, tok, args.rows)


def run_ours(args) -> dict:
    """(a) MCQATrainer as run_training builds it, without evaluation or checkpoints."""
    import dataclasses

    from mcqa_core.training.run import plan_for, sft_config
    from mcqa_core.training.trainer import MCQATrainer, to_dataset

    cfg, model, tok, load_seconds, enc = _load(args)
    out = Path(cfg.train.output_dir)
    # No evaluation at all, the step-0 one included: (b) never evaluates, and only training is timed.
    targs = dataclasses.replace(
        sft_config(cfg, out, plan_for(cfg, len(enc.examples))),
        eval_strategy="no",
        eval_on_start=False,
        save_strategy="no",
        load_best_model_at_end=False,
        logging_steps=10**6,
        disable_tqdm=True,
    )
    trainer = MCQATrainer(model=model, args=targs, train_dataset=to_dataset(enc), processing_class=tok)
    counter = trainer.data_collator = _Counting(trainer.data_collator)
    return _measure(
        trainer,
        counter,
        load_seconds,
        {
            "name": "a: ours (MCQATrainer)",
            "rows": len(enc.examples),
            "skipped_too_long": enc.skipped_too_long,
            "shortened": enc.shortened,
        },
    )


def run_plain(args) -> dict:
    """(b) transformers.Trainer + PEFT, random order, every micro-batch padded to its longest row."""
    from datasets import Dataset
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments

    from mcqa_core.models.precision_rule import precision_flags, training_precision

    cfg, model, tok, load_seconds, enc = _load(args)
    data = Dataset.from_dict(
        {"input_ids": [e["input_ids"] for e in enc.examples], "labels": [e["labels"] for e in enc.examples]}
    )
    t = cfg.train
    targs = TrainingArguments(
        output_dir=t.output_dir,
        per_device_train_batch_size=t.per_device_train_batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        max_steps=t.max_steps,
        learning_rate=t.learning_rate,
        lr_scheduler_type=t.lr_scheduler_type,
        warmup_steps=t.warmup_steps,
        optim=t.optim,
        weight_decay=t.weight_decay,
        seed=t.seed,
        report_to="none",
        save_strategy="no",
        logging_steps=10**6,
        disable_tqdm=True,
        remove_unused_columns=False,
        **precision_flags(training_precision()[0]),
    )
    collator = DataCollatorForSeq2Seq(tok, padding="longest", label_pad_token_id=-100)
    trainer = Trainer(model=model, args=targs, train_dataset=data, data_collator=collator)
    counter = trainer.data_collator = _Counting(collator)
    return _measure(trainer, counter, load_seconds, {"name": "b: plain Trainer + PEFT", "rows": len(enc.examples)})


def run_memory(args, gradient_checkpointing: bool) -> dict:
    """One optimizer step of our trainer (forward, backward, 8-bit AdamW) on the `batch_size` longest rows."""
    import dataclasses

    import transformers

    from mcqa_core.data.features import EncodedRows
    from mcqa_core.models.loading import load_for_training
    from mcqa_core.training.run import plan_for, sft_config
    from mcqa_core.training.trainer import MCQATrainer, to_dataset

    cfg = _config(args, gradient_checkpointing)
    cfg.train.max_steps, cfg.train.gradient_accumulation_steps = 1, 1
    transformers.set_seed(cfg.train.seed)
    model, tok, _ = load_for_training(cfg.model, cfg.lora)
    enc = _encoded_rows(cfg, tok, None)
    longest = sorted(enc.examples, key=lambda e: -len(e["input_ids"]))[: args.batch_size]
    rows = EncodedRows(longest, longest, 0, 0)
    plan = plan_for(cfg, len(longest))
    targs = dataclasses.replace(
        sft_config(cfg, Path(cfg.train.output_dir), plan),
        eval_strategy="no",
        eval_on_start=False,
        save_strategy="no",
        load_best_model_at_end=False,
        logging_steps=10**6,
        disable_tqdm=True,
    )
    trainer = MCQATrainer(model=model, args=targs, train_dataset=to_dataset(rows), processing_class=tok)
    counter = trainer.data_collator = _Counting(trainer.data_collator)
    rss_loaded = _rss_mib()
    started = time.time()
    trainer.train()
    return {
        "name": f"gradient checkpointing {'on' if gradient_checkpointing else 'off'}",
        "gradient_checkpointing": gradient_checkpointing,
        "batch_shape": [args.batch_size, counter.computed // max(1, args.batch_size)],
        "rows_scanned": len(enc.examples),
        "step_seconds": time.time() - started,
        "rss_after_load_mib": rss_loaded,
        "peak_rss_mib": _peak_rss_mib(),
        "step_growth_mib": _peak_rss_mib() - rss_loaded,
    }


# -------------------------------------------------------------------------------------------- driver


def _child(args, which: str) -> dict:
    """Run one configuration in a fresh process (its own peak memory); returns its result."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        result = f.name
    argv = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--only",
        which,
        "--result",
        result,
        "--model",
        args.model,
        "--steps",
        str(args.steps),
        "--rows",
        str(args.rows),
        "--batch-size",
        str(args.batch_size),
        "--grad-accum",
        str(args.grad_accum),
        "--max-seq-length",
        str(args.max_seq_length),
    ]
    argv += ["--gradient-checkpointing"] if args.gradient_checkpointing else []
    argv += ["--data-dir", args.data_dir] if args.data_dir else []
    env = dict(os.environ, TRANSFORMERS_VERBOSITY="error", TQDM_DISABLE="1")
    proc = subprocess.run(argv, env=env, capture_output=True, text=True)
    if proc.returncode:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        raise SystemExit(f"configuration {which} failed (exit {proc.returncode})")
    return json.loads(Path(result).read_text())


def _print_speed(a: dict, b: dict) -> None:
    rows = [
        ("real tokens / s (wall clock)", "real_tokens_per_second", "{:.1f}"),
        ("real tokens / CPU-second (all threads)", "real_tokens_per_cpu_second", "{:.1f}"),
        ("padding share of computed tokens", "padding_share", "{:.1%}"),
        ("real / computed tokens", None, None),
        ("wall seconds per optimizer step", "seconds_per_step", "{:.2f}"),
        ("first optimizer step (s)", "first_step_seconds", "{:.1f}"),
        ("process start to first step end (s)", "start_to_first_step_seconds", "{:.1f}"),
        ("model load (s, conversion cached)", "load_seconds", "{:.1f}"),
        ("peak resident memory (MiB)", "peak_rss_mib", "{:.0f}"),
    ]
    print(f"\n{'':40s} {a['name']:>26s} {b['name']:>26s}")
    for label, key, fmt in rows:
        if key is None:
            va, vb = (f"{r['real_tokens']}/{r['computed_tokens']}" for r in (a, b))
        else:
            va, vb = fmt.format(a[key]), fmt.format(b[key])
        print(f"{label:40s} {va:>26s} {vb:>26s}")
    ratio = a["real_tokens_per_second"] / b["real_tokens_per_second"]
    cpu_ratio = a["real_tokens_per_cpu_second"] / b["real_tokens_per_cpu_second"]
    print(
        f"\nratio a/b of real tokens per second: {ratio:.2f}x wall clock, {cpu_ratio:.2f}x per CPU-second "
        "(target >= 1.3x; on a shared machine the CPU-time ratio is the steadier one)"
    )
    print(
        f"same work: {a['steps']} vs {b['steps']} optimizer steps, {a['real_tokens']} vs {b['real_tokens']} real "
        f"tokens, {a['micro_batches']} vs {b['micro_batches']} micro-batches"
    )


def _print_roofline(a: dict, b: dict, quick: bool) -> None:
    """Each path's FLOP/s in its precision against the matmul peak measured here at the model's MLP shape."""
    if a["precision"] == "fp16" or a.get("device") == "cuda":
        print("roofline: measured on CPU only")
        return
    k, n = a["mlp_shape"]
    rows = (64, 256) if quick else (256, 1024, 4096)
    peaks = matmul_peak(k, n, rows=rows, seconds=0.05 if quick else 0.3)
    print(peak_line(peaks, k, n, rows))
    for label, r in (("a", a), ("b", b)):
        # The base is frozen: forward, the input gradients (no weight gradients), and a second forward under
        # gradient checkpointing; LoRA's few weight gradients and the output layer are left out.
        passes = 3 if r["gradient_checkpointing"] else 2
        flops = 2 * passes * r["linear_macs_per_token"] * r["computed_tokens"]
        what = f"decoder linear layers, {passes} passes over the computed tokens"
        print(roofline_line(label, flops / r["train_seconds"] / 1e9, r["precision"], peaks, what))
        if label == "a":
            at_peak = flops / (peaks[r["precision"]] * 1e9)
            print(
                f"a's {r['train_seconds']:.1f} s: {at_peak:.1f} s of matmuls at the peak, "
                f"{r['train_seconds'] - at_peak:.1f} s the rest (4-bit dequantization forward and backward, "
                "attention, norms, casts, the output layer, the optimizer step)"
            )


def main(args) -> int:
    from mcqa_core.data.medmcqa import default_data_dir

    fill_defaults(args)
    args.data_dir = args.data_dir or default_data_dir()
    if args.rows is None:
        args.rows = args.steps * args.batch_size * args.grad_accum
    problems = []
    if args.steps < 1 or args.batch_size < 1 or args.grad_accum < 1:
        problems.append("--steps, --batch-size and --grad-accum must be at least 1")
    if not args.memory and args.rows < args.steps * args.batch_size * args.grad_accum:
        problems.append(
            f"--rows {args.rows} cannot fill {args.steps} steps of {args.batch_size} x {args.grad_accum} "
            "rows; raise --rows or lower --steps"
        )
    if problems:
        print("error: " + "; ".join(problems), file=sys.stderr)
        return 2

    if args.only:
        if args.only == "a":
            res = run_ours(args)
        elif args.only == "b":
            res = run_plain(args)
        else:
            res = run_memory(args, gradient_checkpointing=args.only == "mem-gc")
        Path(args.result).write_text(json.dumps(res))
        return 0

    from mcqa_core.models.loading import resolve_model
    from mcqa_core.models.offline import mcqa_cache_dir

    cached = (mcqa_cache_dir() / "smollm2-135m-instruct" / "model.safetensors").exists()
    t0 = time.time()
    resolve_model(args.model)  # an offline model is converted once here, so neither configuration pays for it
    print(cpu_line())
    print(
        f"model {args.model}; SmolLM2-135M {'cached' if cached else f'converted once in {time.time() - t0:.0f} s'} "
        f"({mcqa_cache_dir()}); {load_line()} at start"
    )
    if args.memory:
        print(
            f"memory: one optimizer step of our trainer on the {args.batch_size} longest demo-train rows, max "
            f"{args.max_seq_length} tokens, 4-bit NF4 + LoRA, 8-bit AdamW"
        )
        for which in ("mem-nogc", "mem-gc"):
            r = _child(args, which)
            print(
                f"  {r['name']:38s} batch {r['batch_shape'][0]} x {r['batch_shape'][1]} tokens: peak RSS "
                f"{r['peak_rss_mib']:.0f} MiB (after load {r['rss_after_load_mib']:.0f} MiB, "
                f"+{r['step_growth_mib']:.0f} MiB for the step), step {r['step_seconds']:.1f} s"
            )
    else:
        print(
            f"a vs b: {args.steps} optimizer steps of {args.batch_size} rows x {args.grad_accum} accumulation on the "
            f"same {args.rows} demo-train rows (max {args.max_seq_length} tokens), gradient checkpointing "
            f"{'on' if args.gradient_checkpointing else 'off'}"
        )
        a = _child(args, "a")
        b = _child(args, "b")
        if a.get("skipped_too_long") or a.get("shortened"):
            print(
                f"rows: {a['skipped_too_long']} skipped as too long, {a['shortened']} shortened to fit "
                f"--max-seq-length {args.max_seq_length}"
            )
        _print_speed(a, b)
        _print_roofline(a, b, args.quick)
    print(f"load average {os.getloadavg()[0]:.1f} at the end; total {time.time() - STARTED:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(build_parser().parse_args()))
