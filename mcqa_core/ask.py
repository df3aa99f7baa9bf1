"""What the app does, without Streamlit: checking typed questions, answering them, finding adapters,
filtering validation rows. Every function here runs from a script or a test; `pages/` only draws.

Unfilled options: the prompt always shows four options (it is the one the adapter was trained on), so an
empty option is written as `UNFILLED_OPTION` and its letter is taken out of the answer: its probability
is set to zero and the others are renormalised. A question needs at least two filled options.
"""

from __future__ import annotations

import os
import random
import re
import statistics
import dataclasses
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

from .features import encode_prompt
from .prompt import LETTERS, OPTION_KEYS, format_prompt
from .scoring import LetterScore

# The app scores prompts of at most this many tokens; longer questions are shortened (never an option).
APP_MAX_PROMPT_TOKENS = 512
UNFILLED_OPTION = "(no option)"
EXPLANATION_HEADER = "\n\n### Explanation:\n"
REPO = Path(__file__).resolve().parents[1]

# One model serves every session of the app process; scoring with the adapter switched off must not
# interleave with another session's scoring with it on, so every model call holds this lock.
MODEL_LOCK = threading.RLock()


# --------------------------------------------------------------------------- app settings


def measured_accuracy(run: dict) -> tuple[float | None, int | None]:
    """(accuracy, rows) an adapter's record claims: the end-of-training report on the whole eval split when
    there is one, else the last in-training evaluation (fewer rows)."""
    metrics, data = run.get("metrics") or {}, run.get("data") or {}
    if isinstance(metrics.get("report_accuracy"), (int, float)):
        return metrics["report_accuracy"], metrics.get("report_rows")
    acc = metrics.get("final_accuracy")
    return (acc, data.get("eval_rows_used")) if isinstance(acc, (int, float)) else (None, None)


@dataclass(frozen=True)
class AppSettings:
    """Where the app looks for things; each can be set by an environment variable (tests, deployments)."""

    base_model: str  # MCQA_APP_BASE_MODEL: the model used with "base model only"
    adapters_dir: Path  # MCQA_ADAPTERS_DIR: folders listed in the adapter picker
    # MCQA_APP_4BIT=1/0/auto. auto: as trained (the adapter's record; 4-bit for a base alone), so the app
    # answers with exactly the model the evaluation measured (near-tie answers differ between the 4-bit
    # and the full-precision base). 0: full precision, ~1.5x faster on CPU (bench/app_latency.py: idle
    # 2 cores, SmolLM2 + cpu-demo adapter, median 0.46 s 4-bit vs 0.31 s full precision).
    load_in_4bit: bool | None
    # MCQA_APP_THREADS: torch CPU threads. auto: torch's default (all cores): on an idle 2-core machine two
    # threads answer in 0.46 s against 0.65 s for one. A number pins it (e.g. 1 on a machine shared with
    # other jobs, where threads waiting on each other made answers several times slower).
    threads: int | None = None

    @classmethod
    def from_env(cls, env=None) -> "AppSettings":
        env = os.environ if env is None else env
        from .modeling import OFFLINE_MODEL

        four_bit = (env.get("MCQA_APP_4BIT") or "auto").strip().lower()
        if four_bit == "auto":
            load_in_4bit = None
        else:
            load_in_4bit = four_bit in ("1", "true", "yes")
        threads = (env.get("MCQA_APP_THREADS") or "auto").strip().lower()
        return cls(
            base_model=env.get("MCQA_APP_BASE_MODEL") or OFFLINE_MODEL,
            adapters_dir=Path(env.get("MCQA_ADAPTERS_DIR") or REPO / "adapters").expanduser(),
            load_in_4bit=load_in_4bit,
            threads=None if threads == "auto" else max(1, int(threads)),
        )


@dataclass(frozen=True)
class ModelSpec:
    """What to load: an adapter folder (its base comes from mcqa_run.json) or a base model alone."""

    adapter: str | None
    base_model: str | None
    load_in_4bit: bool | None

    def label(self) -> str:
        return f"adapter {self.adapter}" if self.adapter else f"base model {self.base_model}"


def base_spec(settings: AppSettings) -> ModelSpec:
    return ModelSpec(None, settings.base_model, True if settings.load_in_4bit is None else settings.load_in_4bit)


def adapter_spec(folder: str | Path, settings: AppSettings) -> ModelSpec:
    return ModelSpec(str(Path(folder).expanduser()), None, settings.load_in_4bit)


def load_spec(spec: ModelSpec, threads: int | None = None):
    """Load what a spec names (slow: seconds to a minute). The app caches the result per process.

    `threads` sets torch's CPU threads for the process (the app's one model serves every session).
    """
    from . import inference

    if threads:
        import torch

        torch.set_num_threads(threads)

    loaded = inference.load_model(adapter=spec.adapter, base_model=spec.base_model, load_in_4bit=spec.load_in_4bit)
    warm_up(loaded)
    return loaded


WARM_UP_ROW = {"question": "Which organ pumps blood?", "opa": "Heart", "opb": "Lung", "opc": "Liver", "opd": "Skin"}


def warm_up(loaded) -> None:
    """One throwaway answer, so the first user's answer is as fast as every later one (the first forward
    pass pays for kernel selection and memory allocation: seconds on CPU)."""
    answer_rows(loaded, [WARM_UP_ROW])


# --------------------------------------------------------------------------- adapters


@dataclass
class AdapterFolder:
    path: Path
    run: dict  # mcqa_run.json, {} when absent or unreadable
    ready: bool  # has adapter_config.json at the top (a run still training has only checkpoints/)
    problem: str | None = None

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def accuracy(self) -> float | None:
        return measured_accuracy(self.run)[0]


def find_adapters(adapters_dir: str | Path) -> list[AdapterFolder]:
    """The adapter folders directly under `adapters_dir`, newest first; unfinished ones marked not ready."""
    import json

    root = Path(adapters_dir).expanduser()
    if not root.is_dir():
        return []
    found = []
    for folder in sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")),
                         key=lambda p: p.stat().st_mtime, reverse=True):
        ready = (folder / "adapter_config.json").exists()
        run, problem = {}, None
        if (folder / "mcqa_run.json").exists():
            try:
                run = json.loads((folder / "mcqa_run.json").read_text())
            except (OSError, ValueError) as e:
                problem = f"mcqa_run.json is unreadable ({e})"
        elif ready:
            problem = "no mcqa_run.json (trained elsewhere?)"
        else:
            problem = "no adapter_config.json yet (still training, or not an adapter folder)"
        found.append(AdapterFolder(folder, run, ready, problem))
    return found


def describe_run(run: dict) -> dict:
    """The few facts about an adapter the sidebar shows, from its mcqa_run.json."""
    data = run.get("data") or {}
    accuracy, eval_rows = measured_accuracy(run)
    return {
        "base_model": run.get("base_model"),
        "preset": run.get("preset"),
        "trained_on": (f"{data.get('train_split')} ({data.get('train_rows_used')} rows)"
                       if data.get("train_split") else None),
        "data_source": data.get("source"),
        "eval_split": data.get("eval_split"),
        "eval_rows": eval_rows,
        "accuracy": accuracy,
        "finished": run.get("finished"),
    }


# --------------------------------------------------------------------------- checking a typed question


@dataclass
class AskInput:
    """A typed question, checked. `row` is what the model sees; `errors` stop it from being asked."""

    row: dict
    allowed: list[str]  # letters of the filled options
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def _norm(text: str) -> str:
    return " ".join(text.split()).casefold()


def check_input(question: str, options: dict[str, str] | list[str]) -> AskInput:
    """Check a question and its options (by key opa..opd, or a list in A-D order) before asking the model."""
    if not isinstance(options, dict):
        options = dict(zip(OPTION_KEYS, options))
    question = (question or "").strip()
    texts = {k: (options.get(k) or "").strip() for k in OPTION_KEYS}
    filled = [k for k in OPTION_KEYS if texts[k]]
    errors, warns = [], []
    if not question:
        errors.append("Type a question first.")
    if len(filled) < 2:
        have = ", ".join(LETTERS[OPTION_KEYS.index(k)] for k in filled) or "none"
        errors.append(f"Fill at least two options (filled: {have}).")
    seen: dict[str, str] = {}
    for k in filled:
        letter = LETTERS[OPTION_KEYS.index(k)]
        key = _norm(texts[k])
        if key in seen:
            warns.append(f"Options {seen[key]} and {letter} are the same text; the model cannot tell them apart.")
        else:
            seen[key] = letter
    empty = [LETTERS[OPTION_KEYS.index(k)] for k in OPTION_KEYS if not texts[k]]
    if empty and len(filled) >= 2:
        warns.append(f"Option{'s' if len(empty) > 1 else ''} {', '.join(empty)} left empty: shown to the model as "
                     f"\"{UNFILLED_OPTION}\" and never chosen.")
    row = {"question": question, **{k: texts[k] or UNFILLED_OPTION for k in OPTION_KEYS}}
    allowed = [LETTERS[OPTION_KEYS.index(k)] for k in filled]
    return AskInput(row, allowed, errors, warns)


def restrict_probs(probs: list[float], allowed: list[str]) -> list[float]:
    """Zero the letters of unfilled options and renormalise over the rest."""
    kept = [p if L in allowed else 0.0 for L, p in zip(LETTERS, probs)]
    total = sum(kept)
    return [p / total for p in kept] if total > 0 else [1.0 / len(allowed) if L in allowed else 0.0 for L in LETTERS]


# --------------------------------------------------------------------------- answering


@dataclass
class Answer(LetterScore):
    """A letter score as the app shows it: P(A..D) restricted to the filled options, the time it took,
    and whether the adapter was on."""

    seconds: float = 0.0
    adapter: bool = True  # answered with the adapter switched on


@dataclass
class PromptInfo:
    text: str  # exactly what the model reads
    n_tokens: int
    shortened: bool
    message: str | None  # how it was shortened, for the user


def prepare_prompt(tokenizer, row: dict, max_tokens: int = APP_MAX_PROMPT_TOKENS) -> PromptInfo:
    """The prompt the model will read; a question too long is cut (with " ..."), and the message says how.

    Raises ValueError when even the options alone do not fit.
    """
    enc = encode_prompt(tokenizer, row, max_tokens)
    if enc is None:
        raise ValueError(f"The options alone are longer than the {max_tokens} tokens the app reads; shorten them.")
    message = None
    if enc.shortened:
        full = len(tokenizer(format_prompt(row))["input_ids"])
        q_tokens = len(tokenizer(row["question"], add_special_tokens=False)["input_ids"])
        message = (f"The question was too long for the model: the prompt would be {full} tokens and the app reads "
                   f"at most {max_tokens}, so the question ({q_tokens} tokens) was cut at the end and marked "
                   "with \" ...\". The options were kept whole.")
    return PromptInfo(enc.text, len(enc.ids), enc.shortened, message)


def _adapter_switch(model, adapter: bool):
    if adapter:
        return nullcontext()
    if hasattr(model, "disable_adapter"):
        return model.disable_adapter()
    return nullcontext()  # a base model has no adapter to switch off


def answer_rows(loaded, rows: list[dict], *, adapter: bool = True, allowed: list[str] | None = None,
                max_prompt_tokens: int = APP_MAX_PROMPT_TOKENS, batch_size: int = 16) -> list[Answer]:
    """Score rows with the loaded model, adapter on (or off: the base model's answer from the same weights)."""
    from .scoring import score_rows

    with MODEL_LOCK:
        started = time.perf_counter()
        with _adapter_switch(loaded.model, adapter):
            scores = score_rows(loaded.model, loaded.tokenizer, rows, batch_size=batch_size,
                                max_prompt_tokens=max_prompt_tokens)
        seconds = (time.perf_counter() - started) / max(len(rows), 1)
    out = []
    for s in scores:
        probs = restrict_probs(s.probs, allowed) if allowed else s.probs
        fields = {f.name: getattr(s, f.name) for f in dataclasses.fields(s)}
        out.append(Answer(**{**fields, "probs": probs}, seconds=seconds, adapter=adapter and loaded.has_adapter))
    return out


def answer_question(loaded, row: dict, *, adapter: bool = True, allowed: list[str] | None = None,
                    max_prompt_tokens: int = APP_MAX_PROMPT_TOKENS) -> Answer:
    return answer_rows(loaded, [row], adapter=adapter, allowed=allowed, max_prompt_tokens=max_prompt_tokens)[0]


def explanation_prompt(prompt_text: str, row: dict, letter: str) -> str:
    """The scored prompt, the chosen answer as the model was trained to write it, then a request to explain."""
    option = row[OPTION_KEYS[LETTERS.index(letter)]]
    return f"{prompt_text}{letter} {option}{EXPLANATION_HEADER}"


def generate_explanation(loaded, prompt_text: str, row: dict, letter: str, max_new_tokens: int = 96,
                         adapter: bool = True) -> str:
    """Greedy text the model writes after its answer when asked to explain (unchecked, may be wrong)."""
    import torch

    tok, model = loaded.tokenizer, loaded.model
    text = explanation_prompt(prompt_text, row, letter)
    with MODEL_LOCK, _adapter_switch(model, adapter), torch.inference_mode():
        enc = tok(text, return_tensors="pt").to(next(model.parameters()).device)
        out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                             eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    return tok.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True).strip()


# --------------------------------------------------------------------------- browsing rows


ALL = "All"


def gold_letter(row: dict) -> str | None:
    cop = row.get("cop")
    return LETTERS[cop] if isinstance(cop, int) and 0 <= cop <= 3 else None


def subjects(rows: list[dict]) -> list[str]:
    return sorted({r.get("subject_name") or "Unknown" for r in rows})


def topics(rows: list[dict], subject: str = ALL) -> list[str]:
    return sorted({r.get("topic_name") or "Unknown" for r in rows
                   if subject == ALL or (r.get("subject_name") or "Unknown") == subject})


def choice_types(rows: list[dict]) -> list[str]:
    return sorted({r.get("choice_type") or "unknown" for r in rows})


def _haystack(row: dict) -> str:
    parts = [row.get("id", ""), row.get("question", "")] + [row.get(k, "") for k in OPTION_KEYS]
    return _norm(" ".join(str(p or "") for p in parts))


def filter_rows(rows: list[dict], subject: str = ALL, topic: str = ALL, choice_type: str = ALL,
                search: str = "") -> list[dict]:
    """Rows matching every filter; `search` matches all its words (any case) in the id, question or options."""
    words = _norm(search or "").split()
    out = []
    for r in rows:
        if subject != ALL and (r.get("subject_name") or "Unknown") != subject:
            continue
        if topic != ALL and (r.get("topic_name") or "Unknown") != topic:
            continue
        if choice_type != ALL and (r.get("choice_type") or "unknown") != choice_type:
            continue
        if words:
            hay = _haystack(r)
            if not all(w in hay for w in words):
                continue
        out.append(r)
    return out


def page_count(n_rows: int, page_size: int) -> int:
    return max(1, -(-n_rows // page_size))


def page_rows(rows: list[dict], page: int, page_size: int) -> list[dict]:
    """Rows of 1-based `page`, clamped to the pages that exist."""
    page = min(max(1, page), page_count(len(rows), page_size))
    return rows[(page - 1) * page_size: page * page_size]


def find_row(rows: list[dict], row_id: str) -> dict | None:
    return next((r for r in rows if str(r.get("id")) == str(row_id)), None)


def random_row(rows: list[dict], rng: random.Random | None = None) -> dict:
    return (rng or random).choice(rows)


def short(text: str, n: int = 90) -> str:
    text = " ".join(str(text or "").split())
    return text if len(text) <= n else text[: n - 1] + "…"


# --------------------------------------------------------------------------- evaluation reports


REPORT_FILE = "eval_report.json"


def saved_report(adapter_dir: str | Path | None) -> tuple[dict | None, Path | None]:
    """The adapter's eval_report.json (written at training end) and its path, or (None, expected path)."""
    import json

    if not adapter_dir:
        return None, None
    path = Path(adapter_dir).expanduser() / REPORT_FILE
    if not path.exists():
        return None, path
    try:
        return json.loads(path.read_text()), path
    except (OSError, ValueError):
        return None, path


def evaluate_rows(loaded, rows: list[dict], *, compare_base: bool = False, progress=None,
                  max_prompt_tokens: int = APP_MAX_PROMPT_TOKENS) -> dict:
    """`mcqa_core.evaluate.evaluate` while holding the model (no other session scores meanwhile)."""
    from .evaluate import evaluate

    with MODEL_LOCK:
        return evaluate(loaded, rows, compare_base=compare_base and loaded.has_adapter, progress=progress,
                        max_prompt_tokens=max_prompt_tokens)


def wrong_answers(report: dict) -> list[dict]:
    """The report's predictions that missed, most confident first (the most instructive mistakes)."""
    wrong = [p for p in report.get("predictions", []) if p.get("pred") != p.get("gold")]
    return sorted(wrong, key=lambda p: -max(p.get("probs") or [0]))


def subject_table(report: dict) -> list[dict]:
    """Per-subject accuracy rows (with the base model's where the report has it), largest subjects first."""
    base = (report.get("base") or {}).get("per_subject", {})
    out = []
    for name, v in report.get("per_subject", {}).items():
        row = {"subject": name, "n": v["n"], "accuracy": v["accuracy"]}
        if base:
            row["base accuracy"] = base.get(name, {}).get("accuracy")
        out.append(row)
    return sorted(out, key=lambda r: (-r["n"], r["subject"]))


def trained_on_row(run: dict, row_id) -> bool:
    """True when the adapter's training split contains this validation row (offline demo-train = validation
    minus the held-out rows), so its answer says little about how well it generalises."""
    from .data import is_heldout

    return (run.get("data") or {}).get("train_split") == "demo-train" and row_id is not None and not is_heldout(row_id)


def split_overlap_warning(run: dict, split: str) -> str | None:
    """A warning when evaluating an adapter on rows it was trained on."""
    if split == "validation" and (run.get("data") or {}).get("train_split") == "demo-train":
        return ("This adapter was trained on demo-train rows, which are three quarters of validation: accuracy on "
                "validation is inflated. Choose the heldout split for an honest number.")
    return None


# --------------------------------------------------------------------------- showing user text safely


_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$&:])")


def md_escape(text: str) -> str:
    """Text shown literally inside Streamlit markdown: no emphasis, links, images, HTML, LaTeX or headings."""
    escaped = _MD_SPECIAL.sub(r"\\\1", str(text))
    return escaped.replace("\n", "  \n")


# --------------------------------------------------------------------------- latency


def latency_summary(seconds: list[float]) -> dict:
    s = sorted(seconds)
    p90 = s[min(len(s) - 1, int(round(0.9 * (len(s) - 1))))]
    return {"n": len(s), "median_s": statistics.median(s), "p90_s": p90, "max_s": s[-1], "min_s": s[0]}
