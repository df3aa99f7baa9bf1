"""One training run, start to end: check the settings, load the data and the model once, train with
`MCQATrainer`, write the adapter folder (adapter, tokenizer, report, `mcqa_run.json`, card).

Heavy libraries (torch, transformers, TRL) are imported inside `run_training`, so a command that only
parses or checks settings answers at once.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

from ..data.bank_flags import open_bank
from ..data.banks import select_part
from ..data.medmcqa import DEMO_DEV_PERCENT, LOCAL, LoadedSplit, is_dev, load_split, resolve_data_dir
from ..errors import DataError, RunError, disk_full, refuse
from ..models.loading import precision_flags
from ..models.run_record import CHECKPOINT_DIR, REPORT_FILE, rows_seen, write_run
from .batching import BatchPlan, plan_batches
from .checks import config_problems, selection
from .model_card import model_card
from .output_folder import checkpoints, output_problems, prepare_output_dir, save_atomically
from .record_builder import build_record, phase_times, timing
from .status_files import CURVES_FILE, install_stop_handler, stop_requested, write_status
from .settings import RunConfig


def sft_config(cfg: RunConfig, out: Path, plan: BatchPlan):
    """The recipe as TRL's SFTConfig, with the batch plan's sizes (see training/batching.py)."""
    import torch
    from trl import SFTConfig

    t = cfg.train
    return SFTConfig(
        output_dir=str(out / CHECKPOINT_DIR),
        learning_rate=t.learning_rate,
        lr_scheduler_type=t.lr_scheduler_type,
        warmup_steps=t.warmup_steps,
        per_device_train_batch_size=plan.batch_size,
        gradient_accumulation_steps=plan.grad_accum,
        per_device_eval_batch_size=t.per_device_eval_batch_size,
        num_train_epochs=t.num_train_epochs,
        max_steps=t.max_steps,
        eval_strategy="steps",
        eval_steps=t.eval_steps,
        save_strategy="steps",
        save_steps=t.save_steps,
        logging_steps=t.logging_steps,
        logging_nan_inf_filter=False,  # a non-finite loss is logged as such, and NonFiniteGuard stops the run
        save_total_limit=t.save_total_limit,
        # ReLoRA keeps its final state: a checkpoint's LoRA belongs to its own cycle (training/relora.py).
        load_best_model_at_end=t.relora_steps is None,
        metric_for_best_model="accuracy",
        greater_is_better=True,
        optim=t.optim,
        weight_decay=t.weight_decay,
        seed=t.seed,
        data_seed=t.seed,
        report_to=t.report_to,
        # The step-0 evaluation is the base model itself (LoRA starts as a no-op): the reference line of the
        # accuracy curve. A resumed run was measured there already.
        eval_on_start=not t.resume,
        max_length=cfg.model.max_seq_length,
        # group_by_length: each step's rows split by length within the step (see training/batching.py).
        train_sampling_strategy="batch_rebalance" if t.group_by_length else "random",
        length_column_name="length",
        gradient_checkpointing=False,  # already set up by load_for_training (unsloth or peft's way)
        dataset_num_proc=None,
        remove_unused_columns=False,
        disable_tqdm=False,
        save_only_model=False,
        dataloader_pin_memory=torch.cuda.is_available(),  # pinning helps copies to a GPU only (else it warns)
        **precision_flags(),
    )


def plan_for(cfg: RunConfig, n_train: int) -> BatchPlan:
    """The batch plan of a run over n_train rows (computed once per run; see training/batching.py)."""
    return plan_batches(n_train, cfg.train.per_device_train_batch_size, cfg.train.gradient_accumulation_steps)


def planned_steps(args, n_train: int) -> int:
    """Optimizer steps the Trainer will run (its own formula, across processes)."""
    if args.max_steps > 0:
        return args.max_steps
    micro = math.ceil(n_train / (args.per_device_train_batch_size * args.world_size))
    return math.ceil(max(1, micro // args.gradient_accumulation_steps) * args.num_train_epochs)


def _training_rows(cfg: RunConfig):
    """(train, dev, report, bank record). MedMCQA: the three splits of the settings. A bank: its held-out
    quarter is reported (or all of --eval-bank), and a dev slice of the rest chooses the checkpoint."""
    d = cfg.data
    if not d.bank:
        dev = load_split(d.eval_split, d.data_dir)
        report = dev if d.report_split == d.eval_split else load_split(d.report_split, d.data_dir)
        return load_split(d.train_split, d.data_dir, d.train_limit), dev, report, {}
    bank = open_bank(d.bank, d)
    other = open_bank(d.eval_bank, d) if d.eval_bank else None
    for b in (bank, other):
        if b is not None and not b.has_answers:
            raise DataError(f"{b.source} has no answers (no answer column was found or given), so it cannot be "
                            "trained or evaluated on; pass --answer-col NAME")
    rest = bank.rows if other else select_part(bank, "rest").rows
    fit = [r for r in rest if not is_dev(r["id"], DEMO_DEV_PERCENT)]
    dev_rows = [r for r in rest if is_dev(r["id"], DEMO_DEV_PERCENT)]
    if not fit or not dev_rows:
        raise DataError(f"{bank.source} is too small to carve a training part and a dev slice ({len(rest)} rows); "
                        "give it more questions")
    report = other or select_part(bank, "heldout")
    split = lambda rows, part, b=bank: LoadedSplit(rows, f"{Path(b.source).name} ({part})", b.source,  # noqa: E731
                                                    b.skipped, b.skipped_ids)
    return (split(fit[:d.train_limit] if d.train_limit else fit, "train"), split(dev_rows, "dev"),
            split(report.rows, "all" if other else "heldout", report),
            {"bank": bank.describe(), "eval_bank": other.describe() if other else None})


def _encode(tok, rows: list[dict], max_len: int, what: str, completion: str):
    from ..data.features import encode_rows

    enc = encode_rows(tok, rows, max_len, completion=completion)
    if not enc.examples:
        raise DataError(f"no {what} row fits in --max-seq-length {max_len} tokens; raise it (512 fits all "
                        "MedMCQA rows)")
    return enc


def run_training(cfg: RunConfig) -> dict:
    """Train, save the adapter folder, return the run record written to mcqa_run.json."""
    started = time.time()
    # Every refusal that needs no model comes first, all at once, before the heavy libraries are imported
    # and before anything on disk changes.
    out = Path(cfg.train.output_dir).expanduser()
    refuse(RunError, "start training",
           config_problems(cfg) + output_problems(out, cfg.train.overwrite, cfg.train.resume))
    if cfg.data.data_dir == LOCAL:  # recorded as the folder actually read
        cfg.data.data_dir = resolve_data_dir(LOCAL)
    train, evals, reported, banks = _training_rows(cfg)
    eval_rows = evals.rows[:cfg.data.eval_limit] if cfg.data.eval_limit else evals.rows
    report_rows = reported.rows[:cfg.data.report_limit] if cfg.data.report_limit else reported.rows
    resume_from = prepare_output_dir(out, cfg.train.resume, cfg.train.overwrite)
    write_status(out, "running")
    install_stop_handler()  # from here on, a Stop is a clean exit, even while the model is still loading
    os.environ["TENSORBOARD_LOGGING_DIR"] = str(out / "tensorboard")  # read by the Trainer's TensorBoard callback

    import torch
    import transformers

    from ..evaluation.passes import evaluate
    from ..evaluation.report import write_report
    from ..models.inference import LoadedModel
    from ..models.loading import load_for_training
    from .distributed import check_world_fits
    from .progress import ProgressLog, StopOnSignal, plot_curves
    from .relora import make_relora
    from .trainer import EvalSummary, MCQATrainer, NonFiniteGuard, to_dataset

    transformers.set_seed(cfg.train.seed)
    model, tok, model_info = load_for_training(cfg.model, cfg.lora)
    max_len = cfg.model.max_seq_length
    train_enc = _encode(tok, train.rows, max_len, "training", cfg.data.completion)
    eval_enc = _encode(tok, eval_rows, max_len, "evaluation", cfg.data.completion)
    counts = {
        "train_rows_used": len(train_enc.examples), "train_rows_invalid": train.skipped,
        "train_rows_too_long": train_enc.skipped_too_long, "train_rows_shortened": train_enc.shortened,
        "eval_rows_used": len(eval_enc.examples), "eval_rows_invalid": evals.skipped,
        "eval_rows_too_long": eval_enc.skipped_too_long, "eval_rows_shortened": eval_enc.shortened,
    }
    print(f"[data] train {counts['train_rows_used']} rows from {train.source} [{train.split}]"
          f" ({train.skipped} invalid, {train_enc.skipped_too_long} too long, {train_enc.shortened} shortened); "
          f"eval {counts['eval_rows_used']} rows [{evals.split}] ({evals.skipped} invalid, "
          f"{eval_enc.skipped_too_long} too long, {eval_enc.shortened} shortened; --max-seq-length {max_len})",
          flush=True)

    plan = plan_for(cfg, len(train_enc.examples))
    counts.update(batch_size_used=plan.batch_size, grad_accum_used=plan.grad_accum)
    args = sft_config(cfg, out, plan)
    check_world_fits(args, len(train_enc.examples))
    relora = make_relora(cfg.train, planned_steps(args, len(train_enc.examples)), seed=cfg.lora.random_state)
    print(f"[batch] {plan.describe()}; micro-batches "
          f"{'split by length within each step' if cfg.train.group_by_length else 'in random order'}", flush=True)
    reference = {"always_a": sum(r["cop"] == 0 for r in eval_enc.rows) / len(eval_enc.rows)}
    progress, stop, guard = ProgressLog(out, reference), StopOnSignal(), NonFiniteGuard()
    dev_rows = f"{evals.split} ({len(eval_enc.rows)} rows)"  # what every in-training accuracy is measured on
    trainer = MCQATrainer(
        model=model, args=args, train_dataset=to_dataset(train_enc), eval_dataset=to_dataset(eval_enc),
        processing_class=tok, score_rows_for_eval=eval_enc.rows, max_prompt_tokens=max_len,
        # the guard last: it overrides a save or evaluation the callbacks before it asked for
        callbacks=[EvalSummary(dev_rows), progress, stop] + ([relora] if relora else []) + [guard],
    )
    if stop_requested():  # stopped while loading: nothing trained, nothing to resume
        write_status(out, "stopped", step=0)
        return {"stopped": True, "metrics": {"global_steps": 0}}
    train_started = time.time()
    try:
        result = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    except Exception as e:  # a full disk or a vanished folder while writing a checkpoint
        if not isinstance(e, OSError) and not disk_full(e):  # tokenizers raise a plain Exception when full
            raise
        complete, _ = checkpoints(out)
        nxt = (f"rerun with --resume to continue from {complete[-1].name}" if complete
               else "rerun the same command")
        raise RunError(f"training stopped at step {trainer.state.global_step}: {type(e).__name__}: {e}; free the "
                       f"space or fix the folder, then {nxt} (the unfinished checkpoint will be set aside)") from None
    phases = {"load": train_started - started, "train": time.time() - train_started}
    if guard.found:  # no adapter is written: the folder's top keeps no weights that look trained
        reason = (f"training stopped: {guard.found}; no adapter was written. Lower --learning-rate (now "
                  f"{cfg.train.learning_rate:g}) and start again with --overwrite")
        write_status(out, "failed", error=reason, step=trainer.state.global_step)
        raise RunError(reason)
    if stop.requested and trainer.is_world_process_zero():  # Stop: the checkpoint is saved; --resume continues
        write_status(out, "stopped", step=trainer.state.global_step)
        return {"stopped": True, "metrics": {"global_steps": trainer.state.global_step}}
    final = _final_metrics(trainer)
    print(f"[final] model of step {final.get('step')}: eval_loss {final.get('eval_loss', float('nan')):.4f}  "
          f"accuracy {final.get('eval_accuracy', float('nan')):.4f} on {dev_rows}", flush=True)

    metrics = {
        "history": trainer.state.log_history,
        "best_checkpoint": trainer.state.best_model_checkpoint,
        "best_accuracy": trainer.state.best_metric,
        "final_eval_loss": final.get("eval_loss"),
        "final_accuracy": final.get("eval_accuracy"),
        # where final_* and the in-training accuracies were measured (report_* is on data.report_split)
        "final_split": evals.split, "final_rows": len(eval_enc.rows), "final_step": final.get("step"),
        "train_loss": result.training_loss,
        "global_steps": trainer.state.global_step,
    }
    if not trainer.is_world_process_zero():  # several processes: rank 0 alone writes the folder
        return {"metrics": metrics, "rank": args.process_index}
    saving = time.time()
    plot_curves(trainer.state.log_history, out / CURVES_FILE, reference)

    def save_adapter(folder: Path) -> None:
        if relora:  # the merged restarts and the live LoRA, stacked into one adapter
            relora.save_adapter(trainer.model, folder)
        else:
            trainer.model.save_pretrained(folder)
        tok.save_pretrained(folder)

    save_atomically(out, save_adapter)

    record = build_record(cfg, model_info=model_info, world_size=args.world_size, relora=relora,
                          data={"source": train.source, "train_split": train.split, "eval_split": evals.split,
                                "report_split": reported.split, "selection": selection(cfg.data), **banks,
                                **counts, **rows_seen(plan.rows, plan.rows_per_step, trainer.state.global_step,
                                                      args.world_size)},
                          metrics=metrics, device="cuda" if torch.cuda.is_available() else "cpu",
                          started=started, phases={**phases, "save": time.time() - saving})
    _write_record(out, record)  # now, so a failing report never costs the record of a finished run

    # The report on the eval split (up to --report-limit rows), scored by the model training ended with.
    # No base comparison here, to keep training time bounded.
    scoring = time.time()
    loaded = LoadedModel(trainer.model, tok, cfg.model.model_name, str(out), cfg.model.load_in_4bit,
                         str(next(trainer.model.parameters()).device), 0.0)
    report = evaluate(loaded, report_rows, batch_size=cfg.train.per_device_eval_batch_size,
                      max_prompt_tokens=max_len)
    write_report(report, out / REPORT_FILE)
    metrics.update(report_accuracy=report["accuracy"], report_rows=report["n"], report_ci=report["accuracy_ci"],
                   report_vs_always_a=report["vs_always_a"])
    print(f"[report] accuracy {report['accuracy']:.4f} on {report['n']} {reported.split} rows "
          f"-> {out / REPORT_FILE}", flush=True)
    record.update(timing(started, {**record["phase_seconds"], "final_evaluation": time.time() - scoring}))
    print(f"[time] {record['wall_seconds']} s in all: {phase_times(record['phase_seconds'])}", flush=True)
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
