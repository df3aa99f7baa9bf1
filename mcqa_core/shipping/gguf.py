"""The GGUF step of `mcqa-export --format gguf`: the merged model, saved as a transformers folder, is converted
by llama.cpp's converter to one GGUF file per type, and each file is checked the way the 16-bit export is:
llama.cpp's server answers the check rows and its letters are compared with the merged model's."""

from __future__ import annotations

import shutil
from pathlib import Path

from . import llama_cpp


def gguf_types(text: str) -> list[str]:
    return [t.strip().lower() for t in text.split(",") if t.strip()]


def gguf_problems(types: list[str], base_config: dict | None, check_rows: int) -> list[str]:
    """Why a GGUF export cannot run (checked before the merge)."""
    problems = []
    unknown = [t for t in types if t not in llama_cpp.GGUF_TYPES]
    if unknown or not types:
        problems.append(
            f"--gguf-types must be a comma-separated list of {', '.join(llama_cpp.GGUF_TYPES)}, "
            f"got {','.join(types) or 'nothing'}"
        )
    if llama_cpp.converter() is None:
        problems.append(f"llama.cpp's converter is not installed; {llama_cpp.CONVERTER_HINT}")
    elif base_config and (arch := llama_cpp.architecture_problem(base_config)):
        problems.append(arch)
    if check_rows and llama_cpp.server_binary() is None:
        problems.append(
            f"the agreement check runs the GGUF in llama-server, which is not installed; "
            f"{llama_cpp.INSTALL_HINT}, or pass --check-rows 0"
        )
    return problems


def write_gguf(
    hf_folder: Path,
    out: Path,
    types: list[str],
    rows: list[dict],
    merged_scores,
    tokenizer,
    max_prompt_tokens: int,
    log=print,
) -> dict:
    """Convert `hf_folder` into `out/model-TYPE.gguf` for each type, check each against `merged_scores`
    on `rows`, and return {type: {file, bytes, agreement_with_merged, max_prob_diff}}."""
    from ..evaluation.openai_backend import OpenAIScorer
    from ..evaluation.scorers import agreement, max_prob_diff

    files = {}
    for gguf_type in types:
        path = out / f"model-{gguf_type}.gguf"
        llama_cpp.convert(hf_folder, path, gguf_type, log=log)
        entry = {"file": path.name, "bytes": path.stat().st_size}
        if rows:
            with llama_cpp.LlamaServer(path) as server:
                scorer = OpenAIScorer(
                    server.endpoint, server.alias, tokenizer=tokenizer, max_prompt_tokens=max_prompt_tokens
                )
                served = scorer.score(rows)
            entry["agreement_with_merged"] = round(agreement(served, merged_scores), 4)
            entry["max_prob_diff"] = round(max_prob_diff(served, merged_scores), 6)
            log(
                f"[check] {path.name} in llama-server vs the merged model: {entry['agreement_with_merged']:.1%} same "
                f"letter on {len(rows)} rows (largest probability difference {entry['max_prob_diff']:.2g})"
            )
        files[gguf_type] = entry
    shutil.rmtree(hf_folder)
    return files
