"""Merge a LoRA adapter into its base model and save a standalone model folder.

    # merge, check 64 held-out questions answer alike, save safetensors + tokenizer + card
    python -m mcqa_core.export --adapter adapters/cpu-demo --out exports/cpu-demo-merged

    # half the size on disk (the agreement check then runs in bf16 too)
    python -m mcqa_core.export --adapter adapters/cpu-demo --out exports/cpu-demo-bf16 --dtype bfloat16

    # GGUF files for llama.cpp / Ollama, each checked in llama-server against the merged model
    python -m mcqa_core.export --adapter adapters/cpu-demo --out exports/cpu-demo-gguf --format gguf --gguf-types f16,q8_0

    # replace an earlier export, then upload it (token from HF_TOKEN or `hf auth login`)
    python -m mcqa_core.export --adapter adapters/cpu-demo --out exports/m --overwrite --push-to-hub me/medmcqa-1b

The base is loaded in 16-bit (bf16/fp16 on a GPU) or fp32 (CPU), never in 4-bit, even when the
adapter was trained on a 4-bit base: merging into bitsandbytes 4-bit weights rounds the merged
weights back to NF4 and loses quality (peft#2321, transformers#31293). The merged model is then
checked on N rows of the adapter's evaluation split (held-out rows offline, never trained on):

- merge fidelity: merged model vs the same 16-bit base with the adapter unmerged (should be ~100 %);
- vs the adapter as trained: merged model vs the adapter on its training-time base (4-bit if it was
  trained so); differences here are the 4-bit rounding the merged model no longer has.

The folder is written beside --out first and moved into place only when complete, so a failed
export never leaves half a model behind, and --overwrite replaces only an earlier export.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ..command_line import setting, unwritable_problem
from ..data.medmcqa import default_data_dir
from ..errors import AdapterError, DataError, ExportError, refuse
from ..evaluation.scorers import agreement, max_prob_diff
from ..models.inference import read_adapter_info
from ..models.run_record import MERGED_FORMAT, RUN_FILE, measured_accuracy, read_run, write_run
from .gguf import gguf_problems, gguf_types, write_gguf
from .hub_upload import check_push_ready

DTYPES = ("auto", "bfloat16", "float16", "float32")
FORMATS = ("safetensors", "gguf")


@dataclass
class ExportArgs:
    adapter: str = setting(help="Adapter folder written by train_adapter.py (holds adapter_config.json).",
                           metavar="DIR")
    out: str = setting(help="Folder to write the merged model to; must not exist (or see --overwrite).", metavar="DIR")
    check_rows: int = setting(64, "Rows of the adapter's eval split on which merged and adapter answers are compared "
                                  "(0: skip).")
    data_dir: str | None = setting(None, "MedMCQA folder for the check rows (default: the folder the adapter was "
                                         "trained from, else $MCQA_DATA_DIR or ../shared/data/medmcqa).")
    dtype: str = setting("auto", "Weights dtype: auto (bf16/fp16 on GPU, fp32 on CPU), bfloat16, float16, float32.")
    format: str = setting("safetensors", "safetensors (a transformers folder, for vLLM and transformers) or gguf "
                                         "(llama.cpp / Ollama files, written by llama.cpp's own converter).")
    gguf_types: str = setting("f16", "With --format gguf: comma-separated GGUF types, of f16, q8_0, bf16, f32.")
    overwrite: bool = setting(False, "Replace --out if it holds an earlier export.")
    push_to_hub: str | None = setting(None, "Upload the merged folder to this hub repo (owner/name); token from "
                                            "HF_TOKEN or `hf auth login`.")


def _is_export(folder: Path) -> bool:
    try:
        return read_run(folder).get("format") == MERGED_FORMAT
    except AdapterError:  # a damaged record: not one of ours to replace
        return False


def _check_rows_source(args: ExportArgs, run: dict) -> str | None:
    """The data folder to read check rows from, or None for the hub."""
    if args.data_dir:
        return args.data_dir
    source = (run.get("data") or {}).get("source") or ""
    if source and not source.startswith("hub:") and Path(source).is_dir():
        return source
    return default_data_dir()


def validate_args(args: ExportArgs) -> dict:
    """Every problem at once; returns the adapter's run record when all is well."""
    problems, run = [], {}
    adapter, out = Path(args.adapter).expanduser(), Path(args.out).expanduser()
    try:
        run = read_adapter_info(adapter)
    except AdapterError as e:
        problems.append(f"--adapter: {e}")
    if adapter.exists() and out.resolve() in (adapter.resolve(), *adapter.resolve().parents):
        problems.append(f"--out {out} is the adapter folder or one above it; choose a new folder")
    elif out.exists() and (not out.is_dir() or any(out.iterdir())):
        if not args.overwrite:
            problems.append(f"--out {out} already exists; choose another --out or pass --overwrite to replace "
                            "an earlier export")
        elif not _is_export(out):
            problems.append(f"--out {out} is not an earlier export (no {RUN_FILE} of format {MERGED_FORMAT}); "
                            "--overwrite only replaces exports, so choose another --out")
    if unwritable := unwritable_problem(out.parent, f"--out {out}"):  # /proc, /sys, under a file: before the merge
        problems.append(unwritable)
    if args.check_rows < 0:
        problems.append(f"--check-rows must be 0 or more, got {args.check_rows}")
    if args.dtype not in DTYPES:
        problems.append(f"--dtype must be one of {', '.join(DTYPES)}, got {args.dtype!r}")
    if args.format not in FORMATS:
        problems.append(f"--format must be one of {', '.join(FORMATS)}, got {args.format!r}")
    elif args.format == "gguf":
        problems += gguf_problems(gguf_types(args.gguf_types), _base_config(run), args.check_rows)
    if args.push_to_hub:
        problems += check_push_ready(args.push_to_hub)
    refuse(ExportError, "export", problems)
    return run


def _base_config(run: dict) -> dict | None:
    """The base model's config.json when it is on this machine (the offline models, a local folder)."""
    import json

    from ..models.loading import resolve_model

    if not run.get("base_model"):
        return None
    try:
        path = Path(resolve_model(run["base_model"])) / "config.json"
        return json.loads(path.read_text()) if path.exists() else None
    except (OSError, ValueError):
        return None


def merge_dtype(name: str):
    import torch

    from ..models.loading import compute_dtype

    return compute_dtype() if name == "auto" else getattr(torch, name)


def export_merged(args: ExportArgs, log=print) -> dict:
    """Merge, check, save. Returns the merged folder's run record (also written as mcqa_run.json)."""
    started = time.time()
    run = validate_args(args)  # every refusal before the heavy libraries are imported

    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from ..data.medmcqa import load_split
    from ..evaluation.scoring import score_rows
    from ..models.inference import load_model
    from ..models.loading import has_cuda, load_tokenizer, resolve_model
    adapter, out = Path(args.adapter).expanduser(), Path(args.out).expanduser()
    settings = run.get("settings") or {}
    max_prompt = (settings.get("model") or {}).get("max_seq_length", 512)
    device = "cuda" if has_cuda() else "cpu"
    dtype = merge_dtype(args.dtype)

    rows, check = [], {"rows": 0}
    if args.check_rows:
        data = (run.get("data") or {})
        split = data.get("eval_split") or "validation"
        try:
            loaded = load_split(split, _check_rows_source(args, run), args.check_rows)
        except DataError as e:
            raise DataError(f"--check-rows {args.check_rows} needs MedMCQA rows: {e} (or pass --check-rows 0 "
                            "to export without the agreement check)") from None
        rows = loaded.rows
        check = {"rows": len(rows), "split": split, "source": loaded.source}

    def score(model, tok):
        return score_rows(model, tok, rows, batch_size=16, max_prompt_tokens=max_prompt)

    trained = None
    if rows:  # the adapter exactly as it was trained and is served (4-bit base if so)
        ref = load_model(adapter, device=device)
        trained = score(ref.model, ref.tokenizer)
        del ref

    base_path = resolve_model(run["base_model"])
    log(f"[export] loading {run['base_model']} in {str(dtype).removeprefix('torch.')} (not 4-bit) on {device}")
    base = AutoModelForCausalLM.from_pretrained(base_path, dtype=dtype).to(device)
    tok = load_tokenizer(str(adapter) if (adapter / "tokenizer_config.json").exists() else base_path)
    model = PeftModel.from_pretrained(base, str(adapter)).eval()
    unmerged = score(model, tok) if rows else None
    model = model.merge_and_unload()
    model.eval()
    merged = score(model, tok) if rows else None

    if rows:
        check.update({
            "merge_fidelity": round(agreement(merged, unmerged), 4),
            "merge_fidelity_max_prob_diff": round(max_prob_diff(merged, unmerged), 6),
            "agreement_with_trained_adapter": round(agreement(merged, trained), 4),
            "trained_adapter_4bit": bool(run.get("load_in_4bit")),
        })
        log(f"[check] {len(rows)} {check['split']} rows: merged vs adapter on the same "
            f"{str(dtype).removeprefix('torch.')} base agree on {check['merge_fidelity']:.1%} "
            f"(largest probability difference {check['merge_fidelity_max_prob_diff']:.2g}); merged vs the adapter "
            f"as trained ({'4-bit' if check['trained_adapter_4bit'] else 'full-precision'} base) agree on "
            f"{check['agreement_with_trained_adapter']:.1%}")

    record = dict(run)
    record.update({
        "format": MERGED_FORMAT,
        "artifact": "gguf" if args.format == "gguf" else "merged",
        "load_in_4bit": False,
        "merged": {
            "from_adapter": str(adapter.resolve()),
            "adapter_format": run.get("format"),
            "base_model": run["base_model"],
            "dtype": str(dtype).removeprefix("torch."),
            "check": check,
            "seconds": round(time.time() - started, 1),
            "exported": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
    })

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}-export-"))
    tmp.chmod(0o755)  # mkdtemp's 0700 would follow the folder to --out
    try:
        if args.format == "gguf":
            model.save_pretrained(tmp / "hf")
            tok.save_pretrained(tmp / "hf")
            record["merged"]["gguf"] = write_gguf(tmp / "hf", tmp, gguf_types(args.gguf_types), rows, merged, tok,
                                                  max_prompt, log=log)
        else:
            model.save_pretrained(tmp)  # safetensors
            tok.save_pretrained(tmp)
        write_run(tmp, record)
        (tmp / "README.md").write_text(merged_card(record))
        if out.exists():  # validated above: empty, or an earlier export with --overwrite
            old = out.with_name(f".{out.name}-replaced-{int(time.time())}")
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log(f"[export] merged model saved to {out}")
    return record


def merged_card(run: dict) -> str:
    m, c = run["merged"], run["merged"]["check"]
    if c.get("rows"):
        check = (f"| merged vs adapter, same {m['dtype']} base ({c['rows']} {c['split']} rows) | "
                 f"{c['merge_fidelity']:.1%} same letter |\n"
                 f"| merged vs adapter as trained ({'4-bit' if c['trained_adapter_4bit'] else 'full'} base) | "
                 f"{c['agreement_with_trained_adapter']:.1%} same letter |")
    else:
        check = "| agreement check | skipped (--check-rows 0) |"
    for g in (m.get("gguf") or {}).values():
        if "agreement_with_merged" in g:
            check += (f"\n| `{g['file']}` ({g['bytes'] / 2**20:.0f} MiB) in llama-server vs merged | "
                      f"{g['agreement_with_merged']:.1%} same letter |")
    acc = measured_accuracy(run)[0]
    acc_text = f"{acc:.1%}" if isinstance(acc, (int, float)) else "n/a"
    return f"""---
base_model: {run['base_model']}
library_name: {"gguf" if m.get("gguf") else "transformers"}
tags: [medmcqa, lora, merged, multiple-choice, medical]
---
# MedMCQA model (LoRA merged into the base)

`{run['base_model']}` with a MedMCQA LoRA adapter merged into its weights ({m['dtype']}; the base was
loaded in 16-bit/full precision for the merge, never in 4-bit). Merged from `{m['from_adapter']}`.

| | |
|---|---|
| adapter's letter accuracy at training time | {acc_text} |
{check}
| prompt version | `{run.get('prompt_version')}` |

## Use
{_gguf_use(m) or _TRANSFORMERS_USE}
The prompt (version `{run.get('prompt_version')}`) is in `mcqa_run.json` (`prompt_template`).
"""


_TRANSFORMERS_USE = """
```python
from transformers import AutoModelForCausalLM, AutoTokenizer
model = AutoModelForCausalLM.from_pretrained("THIS_FOLDER")
tokenizer = AutoTokenizer.from_pretrained("THIS_FOLDER")
```
"""


def _gguf_use(merged: dict) -> str:
    files = [g["file"] for g in (merged.get("gguf") or {}).values()]
    if not files:
        return ""
    return (f"\nWith llama.cpp (an OpenAI-compatible server; the app and `mcqa-eval --backend openai` use it):\n\n"
            f"```bash\nllama-server -m {files[-1]} --alias mcqa --port 8080\n```\n\n"
            "The transformers folder it was converted from is not kept (export without --format gguf for it).\n")
