"""The model card (`README.md` in the adapter folder): what the adapter is, which method trained it and what that
cost, how it was measured, how to load it."""

from __future__ import annotations

import math

from ..evaluation.report import measured_interval
from ..evaluation.stats import describe_difference
from ..models.run_record import DISCLAIMER, measured_accuracy, measured_split, rows_seen_text
from ..models.tuners import method_of, tuner_for
from .method_costs import human
from .record_builder import phase_times

METHOD_TAGS = {"prefix": "prefix-tuning", "adapter": "bottleneck-adapters", "subset": "partial-fine-tuning"}


def limitations(run: dict) -> str:
    """What the adapter is for and how sure its number is, for the card (and anyone who reads it)."""
    m = run.get("metrics") or {}
    lines = [f"{DISCLAIMER}."]
    if claim := measured_interval(run):
        acc, rows, (lo, hi) = claim
        lines.append(f"Measured letter accuracy: {acc:.1%} (95 % interval {lo:.1%} to {hi:.1%}) on {rows} questions.")
    if m.get("report_vs_always_a"):
        lines.append(f'Against always answering "A": {describe_difference(m["report_vs_always_a"], "always-A")}.')
    if m.get("report_vs_base"):
        lo, hi = m["report_base_ci"]
        lines.append(
            f"The base model alone, on the same questions: {m['report_base_accuracy']:.1%} (95 % interval {lo:.1%} "
            f"to {hi:.1%}); the adapter against it: {describe_difference(m['report_vs_base'], 'the base model')}."
        )
    lines.append(
        "A small model fine-tuned on exam questions learns the answer-letter prior and some wording; its "
        "answers are not checked facts and its explanations are unchecked text."
    )
    return " ".join(lines)


def cost_rows(run: dict) -> str:
    """The card's table rows for what the method cost (none for a record from before costs were kept)."""
    c = run.get("costs") or {}
    rows = []
    if c.get("trainable_parameters") is not None:
        of = f" of {human(c['total_parameters'], '')}" if c.get("total_parameters") else ""
        share = f" ({c['trainable_share']:.2%})" if c.get("trainable_share") is not None else ""
        rows.append(f"| trainable parameters | {human(c['trainable_parameters'], '')}{of}{share} |")
    if c.get("saved_bytes") is not None:
        rows.append(f"| saved weights (adapter_model.safetensors) | {human(c['saved_bytes'], 'B')} |")
    if c.get("peak_memory_bytes"):
        kind = f" ({c['peak_memory_kind']})" if c.get("peak_memory_kind") else ""
        rows.append(f"| peak memory while training | {human(c['peak_memory_bytes'], 'B')}{kind} |")
    return "".join(f"{row}\n" for row in rows)


def how_to_load(method: str) -> str:
    """The card's "Use" section: PEFT's loader for PEFT's folders, this project's for its own."""
    if tuner_for(method).peft_folder:
        text = """```python
from peft import AutoPeftModelForCausalLM
model = AutoPeftModelForCausalLM.from_pretrained("THIS_FOLDER")
```
or, in this project, `mcqa-eval --adapter THIS_FOLDER` and `streamlit run app.py`."""
    else:
        text = """PEFT cannot load this folder (its `adapter_config.json` is this project's format); load it with
this project:
```python
from mcqa_core.models.inference import load_model
loaded = load_model(adapter="THIS_FOLDER")  # loaded.model, loaded.tokenizer
```
or `mcqa-eval --adapter THIS_FOLDER` and `streamlit run app.py`."""
    if tuner_for(method).mergeable:
        text += (
            "\n`mcqa-export --adapter THIS_FOLDER --out DIR` writes a plain transformers model (no PEFT, no project "
            "code needed to load it)."
        )
    else:
        text += "\nIt cannot be merged into a plain model (`mcqa-export` refuses it and says why)."
    return text


def model_card(run: dict) -> str:
    m, d = run["metrics"], run["data"]
    method = method_of(run)
    title = (run.get("costs") or {}).get("title") or tuner_for(method).title
    library = "library_name: peft\n" if tuner_for(method).peft_folder else ""
    acc, acc_rows = measured_accuracy(run)
    acc_text = f"{acc:.1%}" if isinstance(acc, (int, float)) and not math.isnan(acc) else "n/a"
    loss_at = f", model of step {m['final_step']}" if m.get("final_step") is not None else ""
    loss = m.get("final_eval_loss")
    loss_text = f"{loss:.4f}" if isinstance(loss, (int, float)) else loss
    precision = f" in {run['precision']}" if run.get("precision") else ""  # older records did not say
    phases = f" ({phase_times(run['phase_seconds'])})" if run.get("phase_seconds") else ""
    stand_in = (
        "Offline stand-in: trained on validation rows outside the held-out set, scored on held-out rows only."
        if d.get("report_split", d["eval_split"]) == "heldout"
        else ""
    )
    return f"""---
base_model: {run["base_model"]}
{library}tags: [medmcqa, {METHOD_TAGS.get(method, method)}, multiple-choice, medical]
---
# MedMCQA fine-tune: {title}

`{run["base_model"]}` trained with {title}, `--peft-method {method}`, on MedMCQA ({rows_seen_text(run)}; from
`{d["source"]}`) with the `{run["preset"]}` preset.

| | |
|---|---|
| method | {title} |
{cost_rows(run)}| letter accuracy on {measured_split(run)} ({acc_rows} rows) | {acc_text} |
| eval loss on {d["eval_split"]} ({m.get("final_rows", d.get("eval_rows_used"))} rows){loss_at} | {loss_text} |
| optimizer steps | {m.get("global_steps")} |
| prompt version | `{run["prompt_version"]}` |
| 4-bit base | {run["load_in_4bit"]} |
| wall time | {run["wall_seconds"]} s on {run["device"]}{precision}{phases} |

Letter accuracy: the argmax of the next-token probabilities of the answer letters after the prompt.
Checkpoint chosen on: {d.get("selection") or d["eval_split"]}.
{stand_in}

## Limitations

{limitations(run)}

## Training curves

![training loss and letter accuracy per step](curves.png)

TensorBoard event files are in `tensorboard/` (`tensorboard --logdir THIS_FOLDER`).

## Use

{how_to_load(method)}

The prompt (version `{run["prompt_version"]}`):
```
{run["prompt_template"]}```
"""
