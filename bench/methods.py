"""What each training method costs: one set-up per process, a few optimizer steps on the same real rows, and its
trainable parameters, peak memory while training and training tokens per second.

The set-ups are the course quiz's (which saves the most GPU memory?), scaled to what the machine runs, and the
other methods the product trains:

  full-fp32      full fine-tuning, fp32 weights and AdamW states
  full-16bit     full fine-tuning, 16-bit weights (bf16 on a CPU, fp16 on a GPU: the quiz's fp16 set-up, no ZeRO)
  lora-16bit     LoRA on a 16-bit base
  lora-8bit-gc   LoRA on an 8-bit (LLM.int8) base, gradient checkpointing
  qlora-gc       LoRA on a 4-bit NF4 base (double quantization), gradient checkpointing
  subset         the top 2 decoder layers of a 16-bit base
  adapter        bottleneck adapters (width 16, after each MLP) on a 16-bit base
  prefix         prefix tuning (20 virtual tokens) on a 16-bit base

Every set-up computes the loss as the trainer does (the output layer on the answer's tokens alone) and uses
torch's AdamW (the recipe's 8-bit AdamW would shrink the optimizer states of full and subset
fine-tuning the most), the same rows, micro-batch and steps. Attention is SDPA on a CPU, FlashAttention-2 on a
GPU where it is installed. Peak memory is the process's resident memory sampled during the steps on a CPU
(and its growth over the loaded model), `torch.cuda.max_memory_allocated` on a GPU.

    python bench/methods.py                                   # SmolLM2-135M, 4 rows x 256 tokens, 3 steps (minutes)
    python bench/methods.py --device cuda --model llama-3.2-1b-shapes --batch-size 8 --max-seq-length 512
    python bench/methods.py --quick                           # the tiny random Llama, 2 steps: seconds a set-up
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script from anywhere

from bench.gpu_check import LLAMA_3_2_1B  # noqa: E402  (the course's shapes, random weights)
from bench.machine import cpu_line, load_line  # noqa: E402

# name -> (method, base precision: 32 | 16 | 8 | 4, gradient checkpointing)
SETUPS = {
    "full-fp32": ("full", 32, False),
    "full-16bit": ("full", 16, False),
    "lora-16bit": ("lora", 16, False),
    "lora-8bit-gc": ("lora", 8, True),
    "qlora-gc": ("lora", 4, True),
    "subset": ("subset", 16, False),
    "adapter": ("adapter", 16, False),
    "prefix": ("prefix", 16, False),
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="smollm2-135m (default), tiny-random-llama, llama-3.2-1b-shapes.")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--steps", type=int, default=None, help="Optimizer steps (default 3; the first is not timed).")
    p.add_argument("--batch-size", type=int, default=None, help="Rows per step (default 4).")
    p.add_argument("--max-seq-length", type=int, default=None, help="Tokens per row at most (default 256).")
    p.add_argument("--setups", default=",".join(SETUPS), help="Comma-separated, of: " + ", ".join(SETUPS))
    p.add_argument("--data-dir", default=None, help="MedMCQA folder (default: the local one).")
    p.add_argument("--quick", action="store_true", help="tiny-random-llama, 2 steps of 2 rows: seconds a set-up.")
    p.add_argument("--json", default=None, help="Also write the table here.")
    p.add_argument("--only", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    return p


def fill_defaults(args) -> None:
    chosen = {"model": "smollm2-135m", "steps": 3, "batch_size": 4, "max_seq_length": 256}
    if args.quick:
        chosen.update(model="tiny-random-llama", steps=2, batch_size=2)
    for name, value in chosen.items():
        if getattr(args, name) is None:
            setattr(args, name, value)


def model_path(name: str) -> str:
    """A loadable folder: the offline aliases, or the course's shapes with random weights (built once)."""
    if name != "llama-3.2-1b-shapes":
        from mcqa_core.models.loading import resolve_model

        return resolve_model(name)
    folder = Path(tempfile.gettempdir()) / "mcqa-bench-llama-3.2-1b-shapes"
    if not (folder / "config.json").exists():
        import torch
        from transformers import LlamaConfig, LlamaForCausalLM

        from mcqa_core.models.loading import load_tokenizer, resolve_model

        torch.manual_seed(0)
        LlamaForCausalLM(LlamaConfig(**LLAMA_3_2_1B)).to(torch.bfloat16).save_pretrained(folder)
        load_tokenizer(resolve_model("smollm2-135m")).save_pretrained(folder)  # ids beyond its vocabulary unused
    return str(folder)


def load(path: str, bits: int, device: str, checkpointing: bool):
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    half = torch.float16 if device == "cuda" else torch.bfloat16
    kwargs = {"dtype": torch.float32 if bits == 32 else half}
    if device == "cuda":
        import importlib.util

        if importlib.util.find_spec("flash_attn"):
            kwargs["attn_implementation"] = "flash_attention_2"
    if bits == 8:
        kwargs["quantization_config"] = BitsAndBytesConfig(load_in_8bit=True)
    if bits == 4:
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=half
        )
    if bits in (4, 8):
        kwargs["device_map"] = {"": device if device == "cpu" else 0}
    model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    if bits in (4, 8):
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=checkpointing, gradient_checkpointing_kwargs={"use_reentrant": False}
        )
    else:
        model.to(device)
        if checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model, kwargs.get("attn_implementation", "sdpa")


class PeakRss:
    """The process's resident memory, sampled every 5 ms while the block runs (ru_maxrss would count the load)."""

    def __enter__(self):
        import psutil

        self.process, self.peak, self.done = psutil.Process(), 0, False
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()
        return self

    def _watch(self):
        while not self.done:
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.005)

    def __exit__(self, *exc):
        self.done = True
        self.thread.join()


def one_setup(args) -> dict:
    """Runs in its own process: load, attach the method, train `steps` steps, measure."""
    import psutil
    import torch

    from mcqa_core.data.features import encode_rows
    from mcqa_core.data.medmcqa import LOCAL, load_split, resolve_data_dir
    from mcqa_core.models.loading import load_tokenizer
    from mcqa_core.models.tuners import parameter_counts, tuner_for
    from mcqa_core.training.model_patches import lm_head_on_label_tokens_only
    from mcqa_core.training.setting_groups import LoraArgs, MethodArgs

    method, bits, checkpointing = SETUPS[args.only]
    path = model_path(args.model)
    tok = load_tokenizer(path)
    rows = load_split("demo-train", resolve_data_dir(args.data_dir or LOCAL), args.batch_size * args.steps).rows
    enc = encode_rows(tok, rows, args.max_seq_length)
    model, attention = load(path, bits, args.device, checkpointing)
    torch.manual_seed(0)
    model = tuner_for(method).attach(model, MethodArgs(peft_method=method), LoraArgs())
    if bits in (4, 8):  # the method's own weights train in fp32 over a quantized base, as QLoRA's recipe does
        for p in model.parameters():
            if p.requires_grad:
                p.data = p.data.float()
    lm_head_on_label_tokens_only(model)  # the trainer's loss: the output layer on the answer's tokens alone
    trainable, total = parameter_counts(model)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    loaded_rss = psutil.Process().memory_info().rss
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    model.train()
    tokens, seconds = 0, 0.0
    with PeakRss() as rss:
        for step in range(args.steps):
            batch = enc.examples[step * args.batch_size : (step + 1) * args.batch_size]
            width = max(len(e["input_ids"]) for e in batch)
            ids = torch.full((len(batch), width), tok.pad_token_id)
            labels = torch.full((len(batch), width), -100)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for r, e in enumerate(batch):
                n = len(e["input_ids"])
                ids[r, :n], labels[r, :n], mask[r, :n] = torch.tensor(e["input_ids"]), torch.tensor(e["labels"]), 1
            started = time.perf_counter()
            loss = model(
                input_ids=ids.to(args.device), attention_mask=mask.to(args.device), labels=labels.to(args.device)
            ).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if args.device == "cuda":
                torch.cuda.synchronize()
            if step:  # the first step allocates the optimizer states and warms the kernels: not timed
                seconds += time.perf_counter() - started
                tokens += int(mask.sum())
    peak = torch.cuda.max_memory_allocated() if args.device == "cuda" else rss.peak
    return {
        "setup": args.only,
        "method": method,
        "base_bits": bits,
        "gradient_checkpointing": checkpointing,
        "attention": attention,
        "trainable": trainable,
        "total": total,
        "peak_bytes": int(peak),
        "growth_bytes": int(rss.peak - loaded_rss) if args.device == "cpu" else None,
        "tokens_per_second": round(tokens / seconds, 1) if seconds else None,
        "loss": round(float(loss), 4),
    }


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    fill_defaults(args)
    if args.only:
        Path(args.result).write_text(json.dumps(one_setup(args)))
        return
    print(cpu_line())
    print(load_line())
    print(
        f"model {args.model} on {args.device}; {args.steps} steps of {args.batch_size} demo-train rows, at most "
        f"{args.max_seq_length} tokens; torch AdamW; peak = "
        f"{'torch.cuda.max_memory_allocated' if args.device == 'cuda' else 'resident memory sampled during the steps'}"
    )
    results = []
    for name in [s.strip() for s in args.setups.split(",") if s.strip()]:
        with tempfile.NamedTemporaryFile(suffix=".json") as result:
            cmd = [
                sys.executable,
                __file__,
                "--only",
                name,
                "--result",
                result.name,
                "--model",
                args.model,
                "--device",
                args.device,
                "--steps",
                str(args.steps),
                "--batch-size",
                str(args.batch_size),
                "--max-seq-length",
                str(args.max_seq_length),
            ] + (["--data-dir", args.data_dir] if args.data_dir else [])
            done = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, TQDM_DISABLE="1"))
            if done.returncode:
                last = (done.stderr.strip().splitlines() or ["no output"])[-1]
                print(f"{name:13s} not measured: {last[:200]}")
                continue
            results.append(json.loads(Path(result.name).read_text()))
            r = results[-1]
            growth = (
                f", +{r['growth_bytes'] / 2**20:.0f} MiB over the loaded model" if r["growth_bytes"] is not None else ""
            )
            print(
                f"{name:13s} trainable {r['trainable']:>11,} ({100 * r['trainable'] / r['total']:6.2f} %)  "
                f"peak {r['peak_bytes'] / 2**20:8.0f} MiB{growth}  {r['tokens_per_second'] or 0:8.1f} tokens/s"
            )
    if results:
        least = min(results, key=lambda r: r["peak_bytes"])
        print(f"least peak memory: {least['setup']} ({least['peak_bytes'] / 2**20:.0f} MiB)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
