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
        shot_selection=args.shot_selection,
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
            tokenizer_of=_base_of(args, adapter_run),
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


def _base_of(args: EvalArgs, adapter_run: dict) -> str | None:
    """The base model whose tokenizer reads the prompts: the adapter's (or --base-model where its folder is gone)."""
    from ..models.inference import base_for

    return base_for(adapter_run, args.base_model) if adapter_run.get("base_model") else args.base_model


def prompt_room_problem(args: EvalArgs, adapter_run: dict) -> str | None:
    """A --max-prompt-tokens that cannot hold the prompt's fixed part and a one-word question, seen with the
    tokenizer alone (seconds) rather than after the model has loaded; None where it fits or nothing tokenizes
    here. The default holds that part many times over, so only a smaller limit costs a tokenizer load."""
    base = _base_of(args, adapter_run)
    if args.max_prompt_tokens >= EvalArgs.max_prompt_tokens or not base:
        return None
    from ..data.features import encode_prompt
    from ..models.loading import load_tokenizer, resolve_model

    row = {"question": "Which?", "opa": "a", "opb": "b", "opc": "c", "opd": "d"}
    prompt = encode_prompt(load_tokenizer(resolve_model(base)), row, 1 << 20, args.prompt, args.scoring)
    need = len(prompt.ids) + (2 if args.scoring == "cloze" else 0)  # cloze also fits an option and its end
    if args.max_prompt_tokens >= need:
        return None
    return (
        f"--max-prompt-tokens {args.max_prompt_tokens} cannot hold even the {args.prompt} prompt's fixed part with a "
        f"one-word question ({need} tokens with {base}'s tokenizer); pass --max-prompt-tokens {need} or more (the "
        f"default, {EvalArgs.max_prompt_tokens}, fits nearly every question)"
    )


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
