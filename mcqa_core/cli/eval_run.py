"""What `mcqa-eval`'s three ways (one set, `--suite`, `--leaderboard`) share: the protocol the flags ask for, the
rows it names, the scorer (the model in this process or a server), and `measure` behind one progress bar."""

from __future__ import annotations

import sys
from dataclasses import replace

from ..data.banks.bank_flags import open_bank
from ..data.medmcqa import default_data_dir
from ..evaluation.protocol import EvalProtocol
from .eval_settings import EvalArgs


def protocol_of(args: EvalArgs, **changes) -> EvalProtocol:
    """The protocol the flags ask for (a bank's rows default to all of it, MedMCQA's to the held-out rows)."""
    protocol = EvalProtocol(
        split=args.split or ("all" if args.bank else "heldout"),
        source=args.bank,
        limit=args.limit,
        shots=args.shots,
        prompt=args.prompt,
        scoring=args.scoring,
        compare_base=args.compare_base,
        shuffle_options=args.shuffle_options,
        abstain=args.abstain,
    )
    return replace(protocol, **changes)


def open_rows(args: EvalArgs, protocol: EvalProtocol):
    """The protocol's rows (`eval_rows.rows_for`): a part of --bank, mapped by the column flags, or MedMCQA's."""
    import warnings

    from ..data.medmcqa import InvalidRowsWarning
    from ..evaluation.eval_rows import rows_for

    bank = open_bank(args.bank, args) if args.bank else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InvalidRowsWarning)  # counted and printed instead
        return rows_for(protocol, data_dir=args.data_dir or default_data_dir(), bank=bank)


def load_scorer(args: EvalArgs, adapter_run: dict, adapter: str | None = None, base_model: str | None = None):
    """(scorer of the protocol's kind, loaded model or None, context for the report's meta) for --backend local
    (`adapter`/`base_model` given: instead of the flags) or openai."""
    if args.backend == "openai":
        from ..evaluation.openai_backend import connect

        scorer = connect(
            args.endpoint,
            args.model,
            tokenizer_of=adapter_run.get("base_model") or args.base_model,
            base_model=args.base_served_model,
            max_prompt_tokens=args.max_prompt_tokens,
            style=args.prompt,
            timeout=args.timeout,
        )
        print(f"[model] {args.model} served at {scorer.endpoint}", file=sys.stderr)
        return scorer, None, {"device": "server", "load_in_4bit": None}
    from ..evaluation.scorers import local_scorer
    from ..models.inference import load_model

    if adapter is None and base_model is None:
        adapter, base_model = args.adapter, args.base_model
    loaded = load_model(adapter, base_model, load_in_4bit=args.load_in_4bit)
    what = f"adapter {loaded.adapter} on {loaded.base_model}" if loaded.adapter else f"base model {loaded.base_model}"
    print(
        f"[model] {what} ({'4-bit' if loaded.load_in_4bit else 'full precision'}, {loaded.device}, "
        f"loaded in {loaded.load_seconds:.1f} s)",
        file=sys.stderr,
    )
    kw = dict(batch_size=args.batch_size, max_prompt_tokens=args.max_prompt_tokens, style=args.prompt)
    scorer = local_scorer(loaded, args.scoring, **kw)
    return scorer, loaded, {"device": loaded.device, "load_in_4bit": loaded.load_in_4bit}


def measure_with_bar(scorer, data, protocol: EvalProtocol, context: dict) -> dict:
    """`measure.measure`, every pass behind one progress bar."""
    from tqdm.auto import tqdm

    from ..evaluation.measure import measure

    bar = tqdm(total=None, unit="q", desc="scoring")

    def progress(done, total):
        bar.total = total
        bar.n = done
        bar.refresh()

    try:
        return measure(scorer, data, protocol, progress=progress, context=context)
    finally:
        bar.close()
