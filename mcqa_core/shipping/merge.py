"""Merge a trained folder into its base model and save a standalone model folder.

The command is `mcqa-export` (cli/export_command.py). The folder's method decides how (method_merge.py): LoRA,
subset and full fine-tuning merge; prefix tuning and bottleneck adapters cannot, and are refused before any
model loads.

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

import errno
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ..command_line import flag_name, unwritable_problem
from ..data.medmcqa import default_data_dir
from ..errors import AdapterError, DataError, ExportError, disk_full, refuse
from ..evaluation.scorers import agreement, max_prob_diff
from ..models.inference import read_adapter_info
from ..models.run_record import MERGED_FORMAT, RUN_FILE, read_run, write_run
from ..models.tuners import method_of
from ..setting_fields import field_problems, setting
from .gguf import gguf_problems, gguf_types, write_gguf
from .hub_upload import check_push_ready
from .merged_card import merged_card, ollama_modelfile
from .method_merge import merge_onto_base, unmergeable_problem

DTYPES = ("auto", "bfloat16", "float16", "float32")
FORMATS = ("safetensors", "gguf")


@dataclass
class ExportArgs:
    adapter: str = setting(
        help="Adapter folder written by train_adapter.py (holds adapter_config.json).", metavar="DIR"
    )
    out: str = setting(help="Folder to write the merged model to; must not exist (or see --overwrite).", metavar="DIR")
    check_rows: int = setting(
        64, "Rows of the adapter's eval split on which merged and adapter answers are compared (0: skip).", min=0
    )
    data_dir: str | None = setting(
        None,
        "MedMCQA folder for the check rows (default: the folder the adapter was "
        "trained from, else $MCQA_DATA_DIR or ../shared/data/medmcqa).",
    )
    dtype: str = setting(
        "auto", "Weights dtype: auto (bf16/fp16 on GPU, fp32 on CPU), bfloat16, float16, float32.", choices=DTYPES
    )
    format: str = setting(
        "safetensors",
        "safetensors (a transformers folder, for vLLM and transformers) or gguf "
        "(llama.cpp / Ollama files, written by llama.cpp's own converter).",
        choices=FORMATS,
    )
    gguf_types: str = setting("f16", "With --format gguf: comma-separated GGUF types, of f16, q8_0, bf16, f32.")
    overwrite: bool = setting(False, "Replace --out if it holds an earlier export.")
    push_to_hub: str | None = setting(
        None, "Upload the merged folder to this hub repo (owner/name); token from HF_TOKEN or `hf auth login`."
    )


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
        if why := unmergeable_problem(run, adapter):
            refuse(ExportError, "export", [why])  # alone: no other flag makes such a folder mergeable
    except AdapterError as e:  # not an adapter folder, or a method this version does not know
        problems.append(f"--adapter: {e}")
    if adapter.exists() and out.resolve() in (adapter.resolve(), *adapter.resolve().parents):
        problems.append(f"--out {out} is the adapter folder or one above it; choose a new folder")
    elif out.exists() and (not out.is_dir() or any(out.iterdir())):
        if not args.overwrite:
            problems.append(
                f"--out {out} already exists; choose another --out or pass --overwrite to replace an earlier export"
            )
        elif not _is_export(out):
            problems.append(
                f"--out {out} is not an earlier export (no {RUN_FILE} of format {MERGED_FORMAT}); "
                "--overwrite only replaces exports, so choose another --out"
            )
    if unwritable := unwritable_problem(out.parent, f"--out {out}"):  # /proc, /sys, under a file: before the merge
        problems.append(unwritable)
    problems += field_problems(args, lambda f: f"--{flag_name(f)}")
    if args.format == "gguf":
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

    from ..models.precision_rule import compute_dtype

    return compute_dtype() if name == "auto" else getattr(torch, name)


def export_merged(args: ExportArgs, log=print) -> dict:
    """Merge, check, save. Returns the merged folder's run record (also written as mcqa_run.json)."""
    started = time.time()
    run = validate_args(args)  # every refusal before the heavy libraries are imported

    from ..evaluation.letter_scoring import score_rows
    from ..models.loading import has_cuda

    adapter, out = Path(args.adapter).expanduser(), Path(args.out).expanduser()
    max_prompt = ((run.get("settings") or {}).get("model") or {}).get("max_seq_length", 512)
    device = "cuda" if has_cuda() else "cpu"
    dtype = merge_dtype(args.dtype)
    rows, check = _check_rows(args, run)

    def score(model, tok):
        return score_rows(model, tok, rows, batch_size=16, max_prompt_tokens=max_prompt) if rows else None

    trained = None
    if rows:  # the adapter exactly as it was trained and is served (4-bit base if so)
        from ..models.inference import load_model

        ref = load_model(adapter, device=device)
        trained = score(ref.model, ref.tokenizer)
        del ref
    model, tok, unmerged = merge_onto_base(run, adapter, dtype, device, score, log)
    merged = score(model, tok)
    if rows:
        check.update(_agreements(run, merged, unmerged, trained))
        log(_check_line(check, dtype))

    record = _merged_record(run, adapter, args.format, dtype, check, started)
    try:
        _write_export(
            out,
            log,
            record,
            model,
            tok,
            lambda tmp: (
                write_gguf(tmp / "hf", tmp, gguf_types(args.gguf_types), rows, merged, tok, max_prompt, log=log)
                if args.format == "gguf"
                else None
            ),
        )
    except Exception as e:  # tokenizers raise a plain Exception on a full disk; _write_export removed its folder
        if not disk_full(e) and getattr(e, "errno", None) not in (errno.EROFS, errno.EACCES, errno.EPERM):
            raise
        size = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20  # the weights alone
        fix = f"free at least {size:.0f} MiB in {out.parent}" if disk_full(e) else f"make {out.parent} writable"
        raise ExportError(
            f"cannot export: writing {out} failed after the merge ({type(e).__name__}: {e}); nothing was kept "
            f"there: {fix} (or choose another --out), then run the same command again"
        ) from None
    log(f"[export] merged model saved to {out}")
    return record


def _check_rows(args: ExportArgs, run: dict) -> tuple[list[dict], dict]:
    """The rows merged and adapter answers are compared on (none with --check-rows 0), and where they came from."""
    if not args.check_rows:
        return [], {"rows": 0}
    from ..data.medmcqa import load_split

    split = (run.get("data") or {}).get("eval_split") or "validation"
    try:
        loaded = load_split(split, _check_rows_source(args, run), args.check_rows)
    except DataError as e:
        raise DataError(
            f"--check-rows {args.check_rows} needs MedMCQA rows: {e} (or pass --check-rows 0 "
            "to export without the agreement check)"
        ) from None
    return loaded.rows, {"rows": len(loaded.rows), "split": split, "source": loaded.source}


def _agreements(run: dict, merged, unmerged, trained) -> dict:
    return {
        "merge_fidelity": round(agreement(merged, unmerged), 4),
        "merge_fidelity_max_prob_diff": round(max_prob_diff(merged, unmerged), 6),
        "agreement_with_trained_adapter": round(agreement(merged, trained), 4),
        "trained_adapter_4bit": bool(run.get("load_in_4bit")),
    }


def _check_line(check: dict, dtype) -> str:
    return (
        f"[check] {check['rows']} {check['split']} rows: merged vs adapter on the same "
        f"{str(dtype).removeprefix('torch.')} base agree on {check['merge_fidelity']:.1%} "
        f"(largest probability difference {check['merge_fidelity_max_prob_diff']:.2g}); merged vs the adapter "
        f"as trained ({'4-bit' if check['trained_adapter_4bit'] else 'full-precision'} base) agree on "
        f"{check['agreement_with_trained_adapter']:.1%}"
    )


def _merged_record(run: dict, adapter: Path, fmt: str, dtype, check: dict, started: float) -> dict:
    """The adapter's run record, marked as a merged export with what the check found."""
    record = dict(run)
    record.update(
        {
            "format": MERGED_FORMAT,
            "artifact": "gguf" if fmt == "gguf" else "merged",
            "load_in_4bit": False,
            "merged": {
                "from_adapter": str(adapter.resolve()),
                "adapter_format": run.get("format"),
                "peft_method": method_of(run),
                "base_model": run["base_model"],
                "dtype": str(dtype).removeprefix("torch."),
                "check": check,
                "seconds": round(time.time() - started, 1),
                "exported": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            },
        }
    )
    return record


def _write_export(out: Path, log, record: dict, model, tok, write_gguf_files) -> None:
    """Everything written beside --out, then moved into place in one rename: a failure leaves no half model.
    `write_gguf_files(tmp)` converts the transformers folder at tmp/hf (None: keep safetensors)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}-export-"))
    tmp.chmod(0o755)  # mkdtemp's 0700 would follow the folder to --out
    try:
        gguf = record["artifact"] == "gguf"
        model.save_pretrained(tmp / "hf" if gguf else tmp)  # safetensors
        tok.save_pretrained(tmp / "hf" if gguf else tmp)
        if gguf:
            record["merged"]["gguf"] = write_gguf_files(tmp)
            (tmp / "Modelfile").write_text(ollama_modelfile(record["merged"]))
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
