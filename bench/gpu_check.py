"""GPU check: QLoRA training speed/memory (unsloth and transformers+PEFT) and scoring time, fully offline.

    # on the GPU machine (see bench/gpu_check.sh; prepare .gpu/ here first with bench/prepare_gpu_check.sh)
    bash bench/gpu_check.sh
    python3 bench/gpu_check.py --tokenizer .gpu/tokenizer --rows .gpu/validation.jsonl --json out.json

    # the same logic on a tiny model on CPU, to check the script itself (seconds; no unsloth, no memory figures)
    python bench/gpu_check.py --tiny --rows ../shared/data/medmcqa/validation.jsonl \
        --tokenizer ~/.cache/mcqa/tiny-random-llama-v2

What it does, in under 8 minutes on one H200:
1. builds a model with Llama-3.2-1B's shape (hidden 2048, 16 layers, 32 heads / 8 KV heads, MLP 8192,
   vocab 128,256, tied embeddings) and random bf16 weights, saved to a temporary folder (no hub);
2. for each backend (unsloth; transformers+PEFT; ours = transformers+PEFT with the trainer's loss, which
   projects only the label tokens through the LM head), in its own process (importing unsloth patches
   transformers for the whole process): loads that folder in 4-bit NF4 through the project's
   `load_for_training` (the course's LoRA recipe, gradient checkpointing on), and runs optimizer steps
   of --batch-size real MedMCQA training sequences with 8-bit AdamW under bf16 autocast, reporting the
   mean step time after warm-up, tokens/s (real tokens, padding excluded) and peak GPU memory;
3. scores all 4,183 MedMCQA validation questions (their real lengths, so the average MedMCQA length)
   with `score_rows` on the 4-bit base + LoRA, as the app and evaluation do, and reports the time.

Random weights make the losses meaningless, but not the speed or memory, which depend on shapes only.
The training loop is a plain loop, not SFTTrainer: unsloth's speed-ups live in its patched model
(kernels, gradient checkpointing), which the loop exercises; Trainer bookkeeping is left out of both.
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

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

LLAMA_3_2_1B = dict(
    hidden_size=2048,
    num_hidden_layers=16,
    num_attention_heads=32,
    num_key_value_heads=8,
    intermediate_size=8192,
    vocab_size=128256,
    tie_word_embeddings=True,
    max_position_embeddings=131072,
    rope_theta=500000.0,
    rms_norm_eps=1e-5,
    head_dim=64,
)
BACKENDS = ("unsloth", "transformers", "ours")
TINY = dict(
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    intermediate_size=128,
    vocab_size=49152,
    tie_word_embeddings=True,
    max_position_embeddings=1024,
)


def build_model(folder: Path, tokenizer_dir: str, tiny: bool) -> None:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    shape = TINY if tiny else LLAMA_3_2_1B
    config = LlamaConfig(
        **shape,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
    )
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    with torch.device(device):  # random init on the GPU: seconds instead of a minute on CPU
        model = LlamaForCausalLM(config).to(torch.bfloat16 if device == "cuda" else torch.float32)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    n = sum(p.numel() for p in model.parameters())
    print(f"[model] {n / 1e9:.3f} B parameters, saved to {folder}", flush=True)


def load_rows(path: str) -> list[dict]:
    from mcqa_core.data.medmcqa import validate_rows

    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    return validate_rows(rows, source=path)[0]


def pad(examples, pad_id):
    import torch

    width = max(len(e["input_ids"]) for e in examples)
    ids = torch.full((len(examples), width), pad_id)
    labels = torch.full((len(examples), width), -100)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for i, e in enumerate(examples):
        n = len(e["input_ids"])
        ids[i, :n], labels[i, :n], mask[i, :n] = torch.tensor(e["input_ids"]), torch.tensor(e["labels"]), 1
    return ids, labels, mask


def train_worker(args) -> dict:
    """One backend, one process: load in 4-bit, LoRA recipe, timed optimizer steps."""
    import torch

    from mcqa_core.data.features import encode_rows
    from mcqa_core.data.medmcqa import is_heldout
    from mcqa_core.models.loading import load_for_training
    from mcqa_core.training.setting_groups import LoraArgs, ModelConfig

    cuda = torch.cuda.is_available()
    started = time.perf_counter()
    model, tok, info = load_for_training(
        ModelConfig(
            model_name=args.model_dir,
            load_in_4bit=True,
            max_seq_length=512,
            use_unsloth="yes" if args.backend == "unsloth" else "no",
        ),
        LoraArgs(),
    )
    if args.backend == "ours":  # transformers + PEFT with our trainer's loss: the LM head on label tokens only
        from mcqa_core.training.model_patches import lm_head_on_label_tokens_only

        lm_head_on_label_tokens_only(model)
        info["backend"] = "ours"
    load_s = time.perf_counter() - started
    rows = [r for r in load_rows(args.rows) if not is_heldout(r["id"])]
    need = args.batch_size * (args.steps + args.warmup)
    examples = encode_rows(tok, rows[: need + 256], 512).examples[:need]  # a margin for rows that do not fit
    if len(examples) < need:
        raise SystemExit(f"only {len(examples)} training sequences, {need} needed")
    params = [p for p in model.parameters() if p.requires_grad]
    try:
        import bitsandbytes as bnb

        opt = bnb.optim.AdamW8bit(params, lr=3e-4, weight_decay=0.01)
    except Exception:  # no bitsandbytes optimizer on this build
        opt = torch.optim.AdamW(params, lr=3e-4, weight_decay=0.01)
    device = next(p for p in model.parameters()).device
    model.train()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times, tokens, losses = [], 0, []
    for step in range(args.warmup + args.steps):
        batch = examples[step * args.batch_size : (step + 1) * args.batch_size]
        ids, labels, mask = (t.to(device) for t in pad(batch, tok.pad_token_id))
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize()
        if step >= args.warmup:
            times.append(time.perf_counter() - t0)
            tokens += int(mask.sum())
        losses.append(round(float(loss), 4))
    out = {
        "backend": info["backend"],
        "load_s": round(load_s, 1),
        "batch_size": args.batch_size,
        "steps_timed": len(times),
        "step_s": round(sum(times) / len(times), 4),
        "tokens_per_s": round(tokens / sum(times)),
        "mean_seq_tokens": round(tokens / (len(times) * args.batch_size), 1),
        "peak_gpu_mem_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
        "loss_first_last": [losses[0], losses[-1]],
    }
    return out


def score_worker(args) -> dict:
    """Score every validation question with the 4-bit base + LoRA, as the app and evaluation do."""
    import torch
    from peft import get_peft_model

    from mcqa_core.evaluation.letter_scoring import score_rows
    from mcqa_core.models.loading import load_base_model
    from mcqa_core.models.tuners.lora_tuner import lora_config

    cuda = torch.cuda.is_available()
    model, tok, _ = load_base_model(args.model_dir, load_in_4bit=True)
    model = get_peft_model(model, lora_config()).eval()
    rows = load_rows(args.rows)[: args.score_rows]
    score_rows(model, tok, rows[: args.score_batch], batch_size=args.score_batch)  # warm-up (kernels, allocator)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    scores = score_rows(model, tok, rows, batch_size=args.score_batch)
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    n_tokens = sum(s.n_tokens for s in scores)
    return {
        "rows": len(rows),
        "seconds": round(seconds, 2),
        "rows_per_s": round(len(rows) / seconds, 1),
        "mean_prompt_tokens": round(n_tokens / len(rows), 1),
        "batch_size": args.score_batch,
        "peak_gpu_mem_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
    }


def run_worker(kind: str, args, model_dir: Path, backend: str | None, timeout: int) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        kind,
        "--model-dir",
        str(model_dir),
        "--rows",
        args.rows,
        "--steps",
        str(args.steps),
        "--warmup",
        str(args.warmup),
        "--batch-size",
        str(args.batch_size),
        "--score-rows",
        str(args.score_rows),
        "--score-batch",
        str(args.score_batch),
    ]
    if backend:
        cmd += ["--backend", backend]
    started = time.perf_counter()
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s"}
    for line in reversed(r.stdout.splitlines()):
        if line.startswith("RESULT "):
            res = json.loads(line[7:])
            res["wall_s"] = round(time.perf_counter() - started, 1)
            return res
    tail = (r.stderr or r.stdout).strip().splitlines()[-6:]
    return {"error": f"exit {r.returncode}: " + " | ".join(tail)[-800:]}


def run_trainer(args, model_dir: Path, backend: str) -> dict:
    """The real thing: train_adapter.py with the course preset (batch 64 x 16, 4-bit, LoRA recipe, adamw_8bit,
    bf16, evaluation with letter accuracy, the adapter folder and its report) on `backend`, for a few steps."""
    out = model_dir.parent / f"{model_dir.name}-adapter-{backend}"
    n = args.trainer_steps
    cmd = [
        sys.executable,
        str(REPO / "train_adapter.py"),
        "--preset",
        "smoke" if args.tiny else "course",
        "--model-name",
        str(model_dir),
        "--data-dir",
        str(Path(args.rows).parent),
        "--train-split",
        "demo-train",
        "--eval-split",
        "heldout",
        "--eval-limit",
        "256",
        "--report-limit",
        "256",
        "--max-steps",
        str(n),
        "--eval-steps",
        str(n),
        "--save-steps",
        str(n),
        "--logging-steps",
        "1",
        "--warmup-steps",
        "1",
        "--output-dir",
        str(out),
        "--use-unsloth",
        "yes" if backend == "unsloth" else "no",
    ]
    if args.tiny:
        cmd += [
            "--per-device-train-batch-size",
            "64",
            "--gradient-accumulation-steps",
            "16",
            "--max-seq-length",
            "512",
            "--optim",
            "adamw_torch",
        ]
    started = time.perf_counter()
    try:
        r = subprocess.run(
            cmd, capture_output=True, text=True, timeout=args.worker_timeout, env=dict(os.environ, TQDM_DISABLE="1")
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {args.worker_timeout} s"}
    if r.returncode:
        tail = (r.stderr or r.stdout).strip().splitlines()[-8:]
        return {"error": f"exit {r.returncode}: " + " | ".join(tail)[-800:]}
    run = json.loads((out / "mcqa_run.json").read_text())
    steps = [h for h in run["metrics"]["history"] if "loss" in h and "eval_loss" not in h]
    rows_per_step = run["data"]["batch_size_used"] * run["data"]["grad_accum_used"]
    tokens = steps[-1].get("num_tokens") if steps else None  # TRL logs the running total of real tokens
    return {
        "backend": run["backend"],
        "steps": run["metrics"]["global_steps"],
        "rows_per_step": rows_per_step,
        "train_s": run["train_seconds"],
        "step_s": round(run["train_seconds"] / max(1, len(steps)), 2),
        "tokens_per_s": round(tokens / run["train_seconds"]) if tokens else None,
        "loss_first_last": [steps[0]["loss"], steps[-1]["loss"]] if steps else None,
        "final_accuracy": run["metrics"]["final_accuracy"],
        "report_accuracy": run["metrics"].get("report_accuracy"),
        "adapter_files": sorted(p.name for p in out.iterdir()),
        "versions": run["versions"],
        "wall_s": round(time.perf_counter() - started, 1),
    }


def main(args) -> int:
    if args.worker:
        res = train_worker(args) if args.worker == "train" else score_worker(args)
        print("RESULT " + json.dumps(res), flush=True)
        return 0
    started = time.perf_counter()
    results = {"shape": "tiny" if args.tiny else "llama-3.2-1b", "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        build_model(Path(tmp), args.tokenizer, args.tiny)
        backends = [b for b in args.backends.split(",") if b and not (args.tiny and b == "unsloth")]
        for backend in backends:
            print(f"[train] {backend} ...", flush=True)
            results[f"train_{backend}"] = run_worker("train", args, Path(tmp), backend, args.worker_timeout)
            print(f"[train] {backend}: {results[f'train_{backend}']}", flush=True)
        for backend in [b for b in args.trainer_backends.split(",") if b] if args.trainer_steps else []:
            if args.tiny and backend == "unsloth":
                continue
            print(f"[trainer] {backend} ...", flush=True)
            results[f"trainer_{backend}"] = run_trainer(args, Path(tmp), backend)
            print(f"[trainer] {backend}: {results[f'trainer_{backend}']}", flush=True)
        if args.score_rows:
            print("[score] ...", flush=True)
            results["score"] = run_worker("score", args, Path(tmp), None, args.worker_timeout)
            print(f"[score] {results['score']}", flush=True)
    results["total_s"] = round(time.perf_counter() - started, 1)
    print("\n| check | step s | tokens/s | peak GiB | note |\n|---|---|---|---|---|")
    for key, title, cells in (
        (
            "train",
            "QLoRA train",
            lambda r: (
                r["peak_gpu_mem_gib"],
                f"batch {r['batch_size']} x ~{r['mean_seq_tokens']} tokens, load {r['load_s']} s",
            ),
        ),
        (
            "trainer",
            "train_adapter.py",
            lambda r: (
                "-",
                f"{r['steps']} steps of {r['rows_per_step']} rows, loss "
                f"{r['loss_first_last']}, eval accuracy {r['final_accuracy']}, "
                f"{r['wall_s']} s in all",
            ),
        ),
    ):
        for backend in BACKENDS:
            r = results.get(f"{key}_{backend}")
            if r is not None:
                row = ("-", "-", "-", r["error"][:160]) if "error" in r else (r["step_s"], r["tokens_per_s"], *cells(r))
                print(f"| {title}, {backend} | " + " | ".join(map(str, row)) + " |")
    s = results.get("score", {"error": "skipped (--score-rows 0)"})
    if "error" in s:
        print(f"| score validation | - | - | - | {s['error'][:160]} |")
    else:
        print(
            f"| score {s['rows']} questions | {s['seconds']} s total | {s['rows_per_s']} rows/s | "
            f"{s['peak_gpu_mem_gib']} | ~{s['mean_prompt_tokens']} prompt tokens, batch {s['batch_size']} |"
        )
    print(f"total {results['total_s']} s")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0 if all("error" not in v for k, v in results.items() if isinstance(v, dict)) else 1


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--tokenizer", default=".gpu/tokenizer", help="Folder with a Llama-family tokenizer (offline).")
    p.add_argument("--rows", default=".gpu/validation.jsonl", help="MedMCQA validation.jsonl (HF schema).")
    p.add_argument(
        "--backends",
        default=",".join(BACKENDS),
        help="Training backends to time, comma-separated: unsloth (its patched model and fused loss), "
        "transformers (plain PEFT loop, full logits), ours (transformers + PEFT with our trainer's "
        "loss, the LM head on label tokens only). Default: %(default)s.",
    )
    p.add_argument("--steps", type=int, default=10, help="Timed optimizer steps per backend.")
    p.add_argument("--warmup", type=int, default=3, help="Untimed steps first (kernel compilation, allocator).")
    p.add_argument("--batch-size", type=int, default=64, help="Sequences per step (the course recipe's per-device 64).")
    p.add_argument("--score-rows", type=int, default=4183, help="Validation questions to score (0: skip scoring).")
    p.add_argument("--score-batch", type=int, default=64, help="Questions per scoring forward pass.")
    p.add_argument("--worker-timeout", type=int, default=200, help="Seconds each backend / the scoring may take.")
    p.add_argument(
        "--trainer-steps",
        type=int,
        default=0,
        help="Also run train_adapter.py (course preset: 64 x 16 rows a step, eval, adapter folder) for "
        "this many optimizer steps per --trainer-backends (default 0: skip).",
    )
    p.add_argument("--trainer-backends", default="unsloth,transformers", help="Backends for --trainer-steps.")
    p.add_argument("--tiny", action="store_true", help="A tiny model on whatever device: checks this script only.")
    p.add_argument("--json", help="Also write the results here.")
    p.add_argument("--worker", choices=("train", "score"), help=argparse.SUPPRESS)
    p.add_argument("--model-dir", help=argparse.SUPPRESS)
    p.add_argument("--backend", help=argparse.SUPPRESS)
    return p


if __name__ == "__main__":
    sys.exit(main(build_parser().parse_args()))
