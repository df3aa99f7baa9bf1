"""One training run in stages, each reading and filling one RunPlan: prepare (every check on the settings and
the folder, then the rows), load (model, tokenizer, encoded rows, batch plan, and the checks those rows
answer), build the trainer, fit, validate (the final dev metrics), record (adapter folder, `mcqa_run.json`,
card), report (the final scoring).

Heavy libraries (torch, transformers, TRL) are imported from `load` on, so a command that only parses or
checks settings answers at once.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..data.medmcqa import LOCAL, LoadedSplit, resolve_data_dir
from ..errors import RunError, disk_full, refuse
from ..models.precision_rule import CPU_BF16_ENV, precision_flags, training_precision
from ..models.run_record import CHECKPOINT_DIR
from .batching import BatchPlan, plan_batches
from .checks import fit_problems, start_problems
from .distributed import world_size
from .finished_run import record_run, report, validate
from .output_folder import aborted, checkpoints, hold_output_dir, prepare_output_dir
from .setting_groups import OWN_MEANING, RunConfig
from .status_files import ctrl_c_pressed, install_stop_handler, stop_requested, write_status
from .trackers import close_tensorboard, tracker_environment
from .training_rows import training_rows


def sft_config(cfg: RunConfig, out: Path, batches: BatchPlan, precision: str | None = None):
    """TRL's SFTConfig: TrainArgs' fields that SFTConfig shares by name, as they are; then the batch plan's
    sizes (training/batching.py), the precision (default: `training_precision()`) and what this project's
    trainer needs, each with its reason."""
    import torch
    from trl import SFTConfig

    t = cfg.train
    shared = {f.name for f in dataclasses.fields(SFTConfig)} - set(OWN_MEANING)
    return SFTConfig(
        **{
            **{name: value for name, value in dataclasses.asdict(t).items() if name in shared},
            "output_dir": str(out / CHECKPOINT_DIR),
            "per_device_train_batch_size": batches.batch_size,
            "gradient_accumulation_steps": batches.grad_accum,
            "data_seed": t.seed,
            "eval_strategy": "steps",
            "save_strategy": "steps",
            "logging_nan_inf_filter": False,  # a non-finite loss is logged as such, and NonFiniteGuard stops the run
            # ReLoRA keeps its final state: a checkpoint's LoRA belongs to its own cycle (training/relora.py).
            "load_best_model_at_end": t.relora_steps is None,
            "metric_for_best_model": "accuracy",
            "greater_is_better": True,
            # The step-0 evaluation is the base model itself (LoRA starts as a no-op): the reference line of the
            # accuracy curve. A resumed run was measured there already.
            "eval_on_start": not t.resume,
            "max_length": cfg.model.max_seq_length,
            # group_by_length: each step's rows split by length within the step (see training/batching.py).
            "train_sampling_strategy": "batch_rebalance" if t.group_by_length else "random",
            "length_column_name": "length",
            "gradient_checkpointing": False,  # already set up by load_for_training (unsloth or peft's way)
            "dataset_num_proc": None,
            "remove_unused_columns": False,
            "disable_tqdm": False,
            "save_only_model": False,
            "dataloader_pin_memory": torch.cuda.is_available(),  # pinning helps copies to a GPU only (else it warns)
            **precision_flags(precision or training_precision()[0]),
        }
    )


def plan_for(cfg: RunConfig, n_train: int) -> BatchPlan:
    """The batch plan of a run over n_train rows (computed once per run; see training/batching.py)."""
    return plan_batches(n_train, cfg.train.per_device_train_batch_size, cfg.train.gradient_accumulation_steps)


def planned_steps(train, batches: BatchPlan, processes: int) -> int:
    """Optimizer steps the Trainer will run (its own formula, across processes)."""
    if train.max_steps > 0:
        return train.max_steps
    micro = math.ceil(batches.rows / (batches.batch_size * processes))
    return math.ceil(max(1, micro // batches.grad_accum) * train.num_train_epochs)


@dataclass
class RunPlan:
    """What a run has decided and loaded so far; each stage reads it and fills its own part."""

    cfg: RunConfig
    out: Path
    started: float
    train: LoadedSplit
    dev: LoadedSplit
    reported: LoadedSplit
    banks: dict
    resume_from: Path | None
    precision: tuple[str, str]  # (bf16 | fp16 | fp32, why): models/precision_rule.py
    held: list = field(default_factory=list)  # what the run gives back when it ends: the folder's lock, the signals
    phases: dict = field(default_factory=dict)  # seconds per stage, for the record
    # load
    model: object = None
    bf16_scoring: bool = False  # score evaluations in bf16, close calls again in fp32 (a CPU run in bf16)
    tok: object = None
    model_info: dict = field(default_factory=dict)
    train_enc: object = None
    eval_enc: object = None
    batches: BatchPlan | None = None
    counts: dict = field(default_factory=dict)
    # build
    args: object = None
    relora: object = None
    reference: dict = field(default_factory=dict)
    stop: object = None
    guard: object = None

    @property
    def dev_rows(self) -> str:
        """What every in-training accuracy is measured on, in words."""
        return f"{self.dev.split} ({len(self.eval_enc.rows)} rows)"


def run_training(cfg: RunConfig) -> dict:
    """Train, save the adapter folder, return the run record written to mcqa_run.json (for a stopped run, or a
    process other than rank 0, what it did instead)."""
    plan = prepare(cfg)
    try:
        load(plan)
        trainer = build_trainer(plan)
        if stop_requested():  # stopped while loading: nothing trained, nothing to resume
            write_status(plan.out, "stopped", step=0)
            return {"stopped": True, "ctrl_c": ctrl_c_pressed(), "metrics": {"global_steps": 0}}
        result = fit(plan, trainer)
        if plan.stop.requested and trainer.is_world_process_zero():  # the checkpoint is saved; --resume continues
            write_status(plan.out, "stopped", step=trainer.state.global_step)
            return {"stopped": True, "ctrl_c": ctrl_c_pressed(), "metrics": {"global_steps": trainer.state.global_step}}
        metrics = validate(plan, trainer, result)
        if not trainer.is_world_process_zero():  # several processes: rank 0 alone writes the folder
            return {"metrics": metrics, "rank": plan.args.process_index}
        record = record_run(plan, trainer, metrics)
        return report(plan, trainer, record)
    finally:
        for release in reversed(plan.held):
            release()


def prepare(cfg: RunConfig) -> RunPlan:
    """Every refusal that needs no model, all at once, before the heavy libraries are imported and before
    anything on disk changes; then the rows are read, the output folder is locked for this run alone and made
    ready."""
    started = time.time()
    refuse(RunError, "start training", start_problems(cfg))
    if cfg.data.data_dir == LOCAL:  # recorded as the folder actually read
        cfg.data.data_dir = resolve_data_dir(LOCAL)
    train, dev, reported, banks = training_rows(cfg.data)
    out = Path(cfg.train.output_dir).expanduser()
    held = [hold_output_dir(out)]  # until the run ends: a second run into this folder is refused
    try:
        resume_from = prepare_output_dir(out, cfg.train.resume, cfg.train.overwrite)
        write_status(out, "running")
        # from here on, a Stop or a Ctrl-C is a clean exit, even while the model is still loading
        held.append(install_stop_handler(abort=lambda: aborted(out)))
        for line in tracker_environment(cfg.train.report_to, out):
            print(f"[trackers] {line}", flush=True)
    except BaseException:
        for release in reversed(held):
            release()
        raise
    return RunPlan(cfg, out, started, train, dev, reported, banks, resume_from, training_precision(), held)


def load(plan: RunPlan) -> None:
    """The model with a fresh LoRA, the encoded rows and the batch plan; refused when the rows cannot fit."""
    import transformers

    from ..data.features import encode_rows
    from ..models.loading import load_for_training

    cfg, max_len = plan.cfg, plan.cfg.model.max_seq_length
    transformers.set_seed(cfg.train.seed)
    precision, why = plan.precision
    plan.model, plan.tok, plan.model_info = load_for_training(cfg.model, cfg.lora, precision, cfg.method)
    # its evaluations and the report score in bf16 too, close calls again in fp32 (as mcqa-eval)
    cpu_bf16 = plan.bf16_scoring = precision == "bf16" and next(plan.model.parameters()).device.type == "cpu"
    print(f"[precision] {precision}: {why}{f'; {CPU_BF16_ENV}=0 for fp32' if cpu_bf16 else ''}", flush=True)
    dev_rows = plan.dev.rows[: cfg.data.eval_limit] if cfg.data.eval_limit else plan.dev.rows
    encoded = {
        what: encode_rows(plan.tok, rows, max_len, completion=cfg.data.completion)
        for what, rows in (("training", plan.train.rows), ("evaluation", dev_rows))
    }
    plan.train_enc, plan.eval_enc = encoded["training"], encoded["evaluation"]
    n_train = len(plan.train_enc.examples)
    plan.batches = plan_for(cfg, n_train) if n_train else None
    steps = planned_steps(cfg.train, plan.batches, world_size()) if n_train else 0
    batch = plan.batches.batch_size if n_train else cfg.train.per_device_train_batch_size
    refuse(RunError, "start training", fit_problems(cfg, encoded, steps, world_size(), batch))
    for (part, split), enc in zip((("train", plan.train), ("eval", plan.dev)), encoded.values()):
        plan.counts.update(
            {
                f"{part}_rows_used": len(enc.examples),
                f"{part}_rows_invalid": split.skipped,
                f"{part}_rows_too_long": enc.skipped_too_long,
                f"{part}_rows_shortened": enc.shortened,
            }
        )
    plan.counts.update(batch_size_used=plan.batches.batch_size, grad_accum_used=plan.batches.grad_accum)
    c, t, e = plan.counts, plan.train_enc, plan.eval_enc
    print(
        f"[data] train {c['train_rows_used']} rows from {plan.train.source} [{plan.train.split}]"
        f" ({plan.train.skipped} invalid, {t.skipped_too_long} too long, {t.shortened} shortened); "
        f"eval {c['eval_rows_used']} rows [{plan.dev.split}] ({plan.dev.skipped} invalid, "
        f"{e.skipped_too_long} too long, {e.shortened} shortened; --max-seq-length {max_len})",
        flush=True,
    )


def build_trainer(plan: RunPlan):
    """TRL's SFTConfig and our trainer, with its callbacks: the evaluation line, progress, Stop, ReLoRA and
    the non-finite guard."""
    from .progress import ProgressLog, StopOnSignal
    from .relora import make_relora
    from .trainer import EvalSummary, MCQATrainer, NonFiniteGuard, to_dataset

    cfg = plan.cfg
    plan.args = sft_config(cfg, plan.out, plan.batches, plan.precision[0])
    plan.relora = make_relora(cfg.train, seed=cfg.lora.random_state)
    print(
        f"[batch] {plan.batches.describe()}; micro-batches "
        f"{'split by length within each step' if cfg.train.group_by_length else 'in random order'}",
        flush=True,
    )
    plan.reference = {"always_a": sum(r["cop"] == 0 for r in plan.eval_enc.rows) / len(plan.eval_enc.rows)}
    progress = ProgressLog(plan.out, plan.reference)  # always answering "A": the curves' reference line
    plan.stop, plan.guard = StopOnSignal(), NonFiniteGuard()
    return MCQATrainer(
        model=plan.model,
        args=plan.args,
        train_dataset=to_dataset(plan.train_enc),
        eval_dataset=to_dataset(plan.eval_enc),
        processing_class=plan.tok,
        score_rows_for_eval=plan.eval_enc.rows,
        bf16_scoring=plan.bf16_scoring,
        eval_progress=lambda done, total: _evaluating(plan.out, done, total),
        max_prompt_tokens=cfg.model.max_seq_length,
        # the guard last: it overrides a save or evaluation the callbacks before it asked for
        callbacks=[
            EvalSummary(plan.dev_rows),
            progress,
            plan.stop,
            *([plan.relora] if plan.relora else []),
            plan.guard,
        ],
    )


def _evaluating(out: Path, done: int, total: int) -> None:
    """The Train page's bar during an evaluation (the step-0 check too): dev rows k of n, then training again."""
    write_status(out, "running", **({"phase": "evaluation", "done": done, "total": total} if done < total else {}))


def fit(plan: RunPlan, trainer):
    """trainer.train, from the checkpoint to resume; a full disk and a non-finite run are one RunError."""
    train_started = time.time()
    plan.phases["load"] = train_started - plan.started
    try:
        result = trainer.train(resume_from_checkpoint=str(plan.resume_from) if plan.resume_from else None)
    except Exception as e:  # a full disk or a vanished folder while writing a checkpoint
        if not isinstance(e, OSError) and not disk_full(e):  # tokenizers raise a plain Exception when full
            raise
        close_tensorboard(trainer)  # its thread would otherwise print its own traceback after the line below
        complete, _ = checkpoints(plan.out)
        nxt = f"rerun with --resume to continue from {complete[-1].name}" if complete else "rerun the same command"
        raise RunError(
            f"training stopped at step {trainer.state.global_step}: {type(e).__name__}: {e}; free the "
            f"space or fix the folder, then {nxt} (the unfinished checkpoint will be set aside)"
        ) from None
    plan.phases["train"] = time.time() - train_started
    if plan.guard.found:  # no adapter is written: the folder's top keeps no weights that look trained
        reason = (
            f"training stopped: {plan.guard.found}; no adapter was written. Lower --learning-rate (now "
            f"{plan.cfg.train.learning_rate:g}) and start again with --overwrite"
        )
        write_status(plan.out, "failed", error=reason, step=trainer.state.global_step)
        raise RunError(reason)
    return result
