"""The model card (`README.md`) of a merged export: what was merged, how well it agrees, how to use it."""

from __future__ import annotations

from ..models.run_record import measured_accuracy
from ..models.tuners import tuner_for


def merged_card(run: dict) -> str:
    m, c = run["merged"], run["merged"]["check"]
    if c.get("rows"):
        check = (
            f"| merged vs adapter, same {m['dtype']} base ({c['rows']} {c['split']} rows) | "
            f"{c['merge_fidelity']:.1%} same letter |\n"
            f"| merged vs adapter as trained ({'4-bit' if c['trained_adapter_4bit'] else 'full'} base) | "
            f"{c['agreement_with_trained_adapter']:.1%} same letter |"
        )
    else:
        check = "| agreement check | skipped (--check-rows 0) |"
    for g in (m.get("gguf") or {}).values():
        if "agreement_with_merged" in g:
            check += (
                f"\n| `{g['file']}` ({g['bytes'] / 2**20:.0f} MiB) in llama-server vs merged | "
                f"{g['agreement_with_merged']:.1%} same letter |"
            )
    method = m.get("peft_method") or "lora"
    what = {
        "lora": "a MedMCQA LoRA adapter merged into its weights",
        "subset": "its top decoder layers fine-tuned on MedMCQA put over its own",
        "full": "every weight fine-tuned on MedMCQA",
    }.get(method, method)
    acc = measured_accuracy(run)[0]
    acc_text = f"{acc:.1%}" if isinstance(acc, (int, float)) else "n/a"
    return f"""---
base_model: {run["base_model"]}
library_name: {"gguf" if m.get("gguf") else "transformers"}
tags: [medmcqa, {method}, merged, multiple-choice, medical]
---
# MedMCQA model ({tuner_for(method).title}, merged into the base)

`{run["base_model"]}` with {what} ({m["dtype"]}; the base was
loaded in 16-bit/full precision for the merge, never in 4-bit). Merged from `{m["from_adapter"]}`.

| | |
|---|---|
| the folder's letter accuracy at training time | {acc_text} |
{check}
| prompt version | `{run.get("prompt_version")}` |

## Use
{_gguf_use(m) or _TRANSFORMERS_USE}
The prompt (version `{run.get("prompt_version")}`) is in `mcqa_run.json` (`prompt_template`).
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
    return (
        f"\nWith llama.cpp (an OpenAI-compatible server; the app and `mcqa-eval --backend openai` use it):\n\n"
        f"```bash\nllama-server -m {files[-1]} --alias mcqa --port 8080\n```\n\n"
        "With Ollama, from this folder (its `Modelfile` passes the course prompt through as it is):\n\n"
        "```bash\nollama create medmcqa -f Modelfile && ollama run medmcqa\n```\n\n"
        "The transformers folder it was converted from is not kept (export without --format gguf for it).\n"
    )


def ollama_modelfile(merged: dict) -> str:
    """An Ollama Modelfile for the export's last GGUF (the one the card's llama-server line names): the raw course
    prompt, no chat template (the adapter learned the prompt as plain text), greedy answers."""
    from ..data.prompt import PROMPT_TEMPLATE

    file = [g["file"] for g in merged["gguf"].values()][-1]
    prompt = "".join(f"#   {line}\n" for line in PROMPT_TEMPLATE.splitlines())
    return (
        f"# ollama create medmcqa -f Modelfile; then send the course prompt, filled in, as the whole prompt:\n{prompt}"
        f"FROM ./{file}\n"
        'TEMPLATE """{{ .Prompt }}"""\n'
        "PARAMETER temperature 0\n"
        "PARAMETER num_predict 64\n"
    )
