"""What a finished run leaves: the final dev metrics of the model training ended with, the adapter folder with
`mcqa_run.json` and the card, then the final report. Each stage takes run.py's RunPlan."""

from __future__ import annotations

import time
from pathlib import Path

from ..evaluation.stats import describe_difference
from ..models.run_record import REPORT_FILE, rows_seen, write_run
from ..models.tuners import tuner_for
from .checks import selection
from .method_costs import costs_line, method_costs
from .model_card import model_card
from .output_folder import save_atomically
from .record_builder import build_record, phase_times, timing
from .status_files import CURVES_FILE, write_status


def validate(plan, trainer, result) -> dict:
    """The metrics of the run, with the dev loss and accuracy of the model training ended with."""
    final, state = _final_metrics(trainer), trainer.state
    print(
        f"[final] model of step {final.get('step')}: eval_loss {final.get('eval_loss', float('nan')):.4f}  "
        f"accuracy {final.get('eval_accuracy', float('nan')):.4f} on {plan.dev_rows}",
        flush=True,
    )
    return {
        "history": state.log_history,
        "best_checkpoint": state.best_model_checkpoint,
        "best_accuracy": state.best_metric,
        "final_eval_loss": final.get("eval_loss"),
        "final_accuracy": final.get("eval_accuracy"),
        # where final_* and the in-training accuracies were measured (report_* is on data.report_split)
        "final_split": plan.dev.split,
        "final_rows": len(plan.eval_enc.rows),
        "final_step": final.get("step"),
        "train_loss": result.training_loss,
        "global_steps": state.global_step,
    }


def record_run(plan, trainer, metrics: dict) -> dict:
    """Curves, the adapter (saved atomically), then mcqa_run.json and the card: a failing report later never
    costs the record of a finished run."""
    import torch

    from .progress import plot_curves

    saving = time.time()
    plot_curves(trainer.state.log_history, plan.out / CURVES_FILE, plan.reference)

    def save_adapter(folder: Path) -> None:
        if plan.relora:  # the merged restarts and the live LoRA, stacked into one adapter
            plan.relora.save_adapter(trainer.model, folder)
        else:
            tuner_for(plan.cfg.method.peft_method).save(trainer.model, folder)
        plan.tok.save_pretrained(folder)

    save_atomically(plan.out, save_adapter)
    cfg, b, world = plan.cfg, plan.batches, plan.args.world_size
    data = {
        "source": plan.train.source,
        "train_split": plan.train.split,
        "eval_split": plan.dev.split,
        "report_split": plan.reported.split,
        "selection": selection(cfg.data),
        **plan.banks,
        **plan.counts,
        **rows_seen(b.rows, b.rows_per_step, trainer.state.global_step, world),
    }
    record = build_record(
        cfg,
        model_info=plan.model_info,
        world_size=world,
        relora=plan.relora,
        data=data,
        metrics=metrics,
        device="cuda" if torch.cuda.is_available() else "cpu",
        precision=plan.precision,
        started=plan.started,
        phases={**plan.phases, "save": time.time() - saving},
    )
    record["costs"] = method_costs(
        cfg.method.peft_method,
        plan.model_info,
        trainer.step_tokens,
        trainer.step_seconds,
        plan.out,
    )
    print(f"[costs] {costs_line(record['costs'])}", flush=True)
    _write_record(plan.out, record)
    return record


def report(plan, trainer, record: dict) -> dict:
    """The report on the report split (up to --report-limit rows), scored by the model training ended with and,
    with --report-base, by its base on the same rows (the adapter switched off), with the paired test."""
    from ..data.overlap import find_overlap
    from ..evaluation.clean_subset import overlap_block
    from ..evaluation.eval_rows import EvalRows
    from ..evaluation.measure import measure
    from ..evaluation.protocol import EvalProtocol
    from ..evaluation.report import write_report
    from ..evaluation.scorers import LetterScorer
    from ..models.inference import LoadedModel

    cfg, out, scoring = plan.cfg, plan.out, time.time()
    rows = plan.reported.rows[: cfg.data.report_limit] if cfg.data.report_limit else plan.reported.rows
    model = tuner_for(cfg.method.peft_method).for_report(trainer.model, plan.model_info["resolved_model"])
    loaded = LoadedModel(
        model,
        plan.tok,
        cfg.model.model_name,
        str(out),
        cfg.model.load_in_4bit,
        str(next(trainer.model.parameters()).device),
        0.0,
        bf16_scoring=plan.bf16_scoring,
    )
    # ReLoRA merged its restarts into the base weights: switching the adapter off no longer gives the base
    compare_base = cfg.data.report_base and not plan.relora
    step = trainer.state.global_step

    def progress(done: int, total: int) -> None:  # the Train page shows this phase with its own bar
        write_status(out, "running", phase="report", done=done, total=total, step=step)

    progress(0, len(rows) * (1 + compare_base))
    scorer = LetterScorer(loaded, batch_size=cfg.train.per_device_eval_batch_size,
                          max_prompt_tokens=cfg.model.max_seq_length)  # fmt: skip
    split, source = plan.reported.split, plan.reported.source
    protocol = EvalProtocol(split=split, limit=cfg.data.report_limit, compare_base=compare_base)
    scores = measure(scorer, EvalRows(rows, split, source), protocol, progress=progress)
    found = find_overlap(plan.train.rows, rows)
    scores["overlap"] = overlap_block(scores, found, f"{plan.train.split} ({len(plan.train.rows)} rows)")
    write_report(scores, out / REPORT_FILE)
    record["metrics"].update(
        report_accuracy=scores["accuracy"],
        report_rows=scores["n"],
        report_ci=scores["accuracy_ci"],
        report_vs_always_a=scores["vs_always_a"],
    )
    print(
        f"[report] accuracy {scores['accuracy']:.4f} on {scores['n']} {plan.reported.split} rows "
        f"-> {out / REPORT_FILE}",
        flush=True,
    )
    if base := scores.get("base"):
        record["metrics"].update(
            report_base_accuracy=base["accuracy"], report_base_ci=base["accuracy_ci"], report_vs_base=scores["vs_base"]
        )
        print(
            f"[report] base model {base['accuracy']:.4f} on the same rows; the adapter against it: "
            f"{describe_difference(scores['vs_base'], 'the base model')}",
            flush=True,
        )
    elif cfg.data.report_base:
        print("[report] no base comparison: ReLoRA merged its restarts into the base weights", flush=True)
    record.update(timing(plan.started, {**record["phase_seconds"], "final_evaluation": time.time() - scoring}))
    print(
        f"[time] {record['wall_seconds']} s in all ({record['precision']} on {record['device']}): "
        f"{phase_times(record['phase_seconds'])}",
        flush=True,
    )
    _write_record(out, record)
    write_status(out, "done", step=trainer.state.global_step)
    return record


def _write_record(out: Path, record: dict) -> None:
    write_run(out, record)
    (out / "README.md").write_text(model_card(record))


def _final_metrics(trainer) -> dict:
    """Eval loss and accuracy of the model training ends with. The evaluation at the step that model comes
    from (the best checkpoint, which load_best_model_at_end restored, or the last step) already measured
    it; evaluate again only when no evaluation ran at that step."""
    state = trainer.state
    step = state.global_step
    if state.best_model_checkpoint and trainer.args.load_best_model_at_end:
        step = int(Path(state.best_model_checkpoint).name.rsplit("-", 1)[-1])
    logged = [h for h in state.log_history if "eval_loss" in h and h.get("step") == step]
    return logged[-1] if logged else {**trainer.evaluate(), "step": step}
