"""The model card (`README.md` in the adapter folder): what the adapter is, how it was measured, how to use it."""

from __future__ import annotations

import math

from ..evaluation.report import measured_interval
from ..evaluation.stats import describe_difference
from ..models.run_record import DISCLAIMER, measured_accuracy, measured_split, rows_seen_text
from .record_builder import phase_times


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


def model_card(run: dict) -> str:
    m, d = run["metrics"], run["data"]
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
library_name: peft
tags: [medmcqa, lora, multiple-choice, medical]
---
# MedMCQA LoRA adapter

LoRA adapter for `{run["base_model"]}` trained on MedMCQA ({rows_seen_text(run)}; from `{d["source"]}`) with the
`{run["preset"]}` preset.

| | |
|---|---|
| letter accuracy on {measured_split(run)} ({acc_rows} rows) | {acc_text} |
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

```python
from peft import AutoPeftModelForCausalLM
model = AutoPeftModelForCausalLM.from_pretrained("THIS_FOLDER")
```
or, in this project, `mcqa-eval --adapter THIS_FOLDER` and `streamlit run app.py`.

The prompt (version `{run["prompt_version"]}`):
```
{run["prompt_template"]}```
"""
