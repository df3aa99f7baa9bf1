"""MedMCQA rows: loaded from the Hugging Face hub or a local folder, validated, and split.

Every row that reaches training or scoring has passed `validate_row`: a non-empty question, four
non-empty options and `cop` in 0..3. Invalid rows are skipped, counted and named in one warning.

Offline split (a stand-in for the official protocol, which trains on `train` and reports on all
of `validation`): with only 100 real train rows available offline, a validation row is HELD OUT
when `sha256(id) % 4 == 0` (about a quarter) and usable for demo training otherwise.
Offline results are reported on held-out rows only, and nothing ever trains on them.

Dev slices, for choosing checkpoints without reading a reported row: a training row is a DEV row when
`sha256("dev:" + id) % 100` falls below the slice's share: 10 % of the demo rows (`demo-dev`, the rest
is `demo-train`), 1 % of MedMCQA's train split (`train-dev`, the rest is `train-rest`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shlex
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DataError
from .prompt import MEDMCQA_OPTIONS, MIN_OPTIONS, OPTION_KEYS, option_count

HUB_DATASET = "openlifescienceai/medmcqa"
FILE_SPLITS = ("train", "validation")  # splits stored as files / hub splits
# Derived by id hash: split -> (file split, keep(row_id)).
DEMO_DEV_PERCENT, TRAIN_DEV_PERCENT = 10, 1
DERIVED_SPLITS = {
    "heldout": ("validation", lambda i: is_heldout(i)),
    "demo-train": ("validation", lambda i: not is_heldout(i) and not is_dev(i, DEMO_DEV_PERCENT)),
    "demo-dev": ("validation", lambda i: not is_heldout(i) and is_dev(i, DEMO_DEV_PERCENT)),
    "train-rest": ("train", lambda i: not is_dev(i, TRAIN_DEV_PERCENT)),
    "train-dev": ("train", lambda i: is_dev(i, TRAIN_DEV_PERCENT)),
}
SPLITS = FILE_SPLITS + tuple(DERIVED_SPLITS)
# The groups of splits the commands offer, each named once here.
REPORT_SPLITS = ("validation", "heldout")  # a final report: the official protocol, or its offline stand-in
CHECKPOINT_SPLITS = ("train-dev", "demo-dev", *REPORT_SPLITS)  # where a training run may choose its checkpoint
SCORED_SPLITS = (*REPORT_SPLITS, "demo-dev")  # what mcqa-eval scores of MedMCQA


def splits_overlap(a: str, b: str) -> bool:
    """Two splits share rows when they are the same, or one is the file split the other is carved from;
    the splits carved from one file (`heldout`/`demo-*`, the `train-*` pair) are disjoint."""
    if a == b:
        return True
    base_a, base_b = (DERIVED_SPLITS[s][0] if s in DERIVED_SPLITS else s for s in (a, b))
    return base_a == base_b and (a == base_a or b == base_b)


SHARED_DATA_HINT = "../shared/data/medmcqa"


# The documented place for the real rows: a `shared/data/medmcqa` folder beside the repository.
SHARED_DATA_DIR = Path(__file__).resolve().parents[3] / "shared" / "data" / "medmcqa"
LOCAL = "local"  # a data_dir setting meaning "the local rows, wherever default_data_dir finds them"


def default_data_dir() -> str | None:
    """The local MedMCQA folder: $MCQA_DATA_DIR, else ../shared/data/medmcqa beside the repository when it
    holds the rows, else None (the hub). Asked when a run or page starts, never frozen at import."""
    env = os.environ.get("MCQA_DATA_DIR")
    if env:
        return env
    return str(SHARED_DATA_DIR) if (SHARED_DATA_DIR / "validation.jsonl").exists() else None


def resolve_data_dir(data_dir: str | Path | None) -> str | None:
    """A data_dir setting as a folder: `local` becomes default_data_dir() (refused when there is none)."""
    if data_dir != LOCAL:
        return None if data_dir is None else str(data_dir)
    found = default_data_dir()
    if found is None:
        raise DataError(
            f"no local MedMCQA rows: set MCQA_DATA_DIR or pass --data-dir FOLDER (the documented "
            f"place is {SHARED_DATA_HINT} beside the repository)"
        )
    return found


@contextlib.contextmanager
def no_progress_bars():
    """datasets' progress bars off for a moment: a local file reads in a blink, and a refusal after it stays one
    line on stderr."""
    import datasets

    was_off = datasets.utils.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if not was_off:
            datasets.enable_progress_bars()


class InvalidRowsWarning(UserWarning):
    """Some rows failed validation and were skipped."""


@dataclass
class LoadedSplit:
    rows: list[dict]
    split: str
    source: str  # "hub:openlifescienceai/medmcqa" or the folder path
    skipped: int = 0
    skipped_ids: list[str] = field(default_factory=list)

    def describe(self) -> dict:
        return {"split": self.split, "source": self.source, "rows": len(self.rows), "skipped_invalid": self.skipped}


def is_heldout(row_id: str) -> bool:
    return int(hashlib.sha256(str(row_id).encode()).hexdigest(), 16) % 4 == 0


def is_dev(row_id: str, percent: int) -> bool:
    return int(hashlib.sha256(f"dev:{row_id}".encode()).hexdigest(), 16) % 100 < percent


def validate_row(row, options: int | None = MEDMCQA_OPTIONS, need_answer: bool = True) -> str | None:
    """The reason a row is unusable, or None when it is fine. `options`: the exact count required (MedMCQA's
    four), or None for any count from 2 to 5; `need_answer=False` accepts a row without `cop`."""
    if not isinstance(row, dict):
        return "not a JSON object"
    if "_error" in row:  # unreadable line, named by _read_jsonl
        return row["_error"]
    q = row.get("question")
    if not isinstance(q, str) or not q.strip():
        return "empty question"
    wanted = options or max(option_count(row), MIN_OPTIONS)
    for key in OPTION_KEYS[:wanted]:
        v = row.get(key)
        if not isinstance(v, str) or not v.strip():
            return f"missing option {key}"
    if options is None and any(row.get(k) is not None for k in OPTION_KEYS[wanted:]):
        return f"options after {OPTION_KEYS[wanted - 1]} with a gap before them"
    cop = row.get("cop")
    if cop is None and not need_answer:
        return None
    if isinstance(cop, bool) or not isinstance(cop, int) or not 0 <= cop < wanted:
        return f"cop {cop!r} not in 0..{wanted - 1}"
    return None


def validate_rows(raw_rows, source: str = "data") -> tuple[list[dict], int, list[str]]:
    """Keep the valid rows; warn once about the rest, naming the first few."""
    rows, bad = [], []
    for i, row in enumerate(raw_rows):
        reason = validate_row(row)
        if reason is None:
            rows.append(row)
        else:
            rid = row.get("id", f"row {i}") if isinstance(row, dict) else f"row {i}"
            bad.append(f"{rid} ({reason})")
    if bad:
        shown = ", ".join(bad[:5]) + (" ..." if len(bad) > 5 else "")
        warnings.warn(f"skipped {len(bad)} invalid row(s) in {source}: {shown}", InvalidRowsWarning, stacklevel=2)
    return rows, len(bad), bad[:5]


def refuse_compressed(path: Path, head: bytes) -> None:
    """A gzip file read as text fails at its second byte: name it as compressed, with the command that fixes it."""
    if head.startswith(b"\x1f\x8b"):
        q = shlex.quote(str(path))
        gz = path.suffix.lower() == ".gz"  # gunzip refuses a name without .gz, so the other is renamed first
        fix = f"gunzip {q}` and use {path.with_suffix('')}" if gz else f"mv {q} {q}.gz && gunzip {q}.gz`"
        raise DataError(f"{path} is gzip-compressed, not text; decompress it with `{fix}")


def _read_jsonl(path: Path) -> list:
    """One row per line; a line that is not UTF-8 or not JSON becomes an invalid row named by file and line."""
    out = []
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read {path} ({e.strerror or e}); check the file and its permissions") from None
    refuse_compressed(path, data)
    for n, raw in enumerate(data.splitlines(), 1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            out.append({"id": f"{path.name}:{n}", "_error": f"not UTF-8 text (byte {e.start + 1})"})
            continue
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as e:
            out.append({"id": f"{path.name}:{n}", "_error": f"malformed JSON: {e.msg}"})
    return out


def _read_local(data_dir: Path, base_split: str) -> list:
    jsonl, parquet = data_dir / f"{base_split}.jsonl", data_dir / f"{base_split}.parquet"
    if jsonl.exists() or parquet.exists():
        file = jsonl if jsonl.exists() else parquet
        raw = _read_jsonl(jsonl) if file == jsonl else _read_parquet(parquet)
        if not raw:
            raise DataError(
                f"{file} is empty (no rows); put MedMCQA rows in it (Hugging Face schema) or point "
                f"--data-dir at another folder, e.g. {SHARED_DATA_HINT}"
            )
        return raw
    have = sorted(p.name for p in data_dir.iterdir()) if data_dir.is_dir() else []
    raise DataError(
        f"{data_dir} has no {base_split}.jsonl or {base_split}.parquet (it holds: {', '.join(have) or 'nothing'}). "
        f"Point --data-dir at a folder with MedMCQA files in the Hugging Face schema, e.g. {SHARED_DATA_HINT}."
    )


def _read_parquet(parquet: Path) -> list:
    import pandas as pd

    try:
        return pd.read_parquet(parquet).to_dict("records")
    except Exception as e:  # pyarrow raises several types for a damaged file
        raise DataError(
            f"cannot read {parquet} as Parquet ({type(e).__name__}: {str(e)[:200]}); "
            "replace the file or convert it to JSONL"
        ) from None


def _read_hub(base_split: str) -> list:
    from ..hub import OFFLINE_HINT, hub_reachable

    if not hub_reachable():
        raise DataError(f"cannot load {HUB_DATASET} [{base_split}]: {OFFLINE_HINT}")
    try:
        import datasets

        ds = datasets.load_dataset(HUB_DATASET, split=base_split)
    except Exception as e:  # the hub raises many types: connection, offline mode, missing split
        raise DataError(
            f"could not load {HUB_DATASET} split {base_split!r} from the Hugging Face hub ({type(e).__name__}: "
            f"{str(e)[:200]}). Offline? Use local files: --data-dir {SHARED_DATA_HINT} (train.jsonl / "
            "validation.jsonl) and the offline model smollm2-135m."
        ) from None
    return [dict(r) for r in ds]


def load_split(split: str = "validation", data_dir: str | Path | None = None, limit: int | None = None) -> LoadedSplit:
    """Load and validate one split: train, validation, or one derived from them (DERIVED_SPLITS).

    `data_dir=None` reads the hub; a folder reads `{split}.jsonl` (or `.parquet`) from it.
    """
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    if limit is not None and limit <= 0:
        raise DataError(f"limit must be a positive number of rows, got {limit}")
    base, keep = DERIVED_SPLITS.get(split, (split, None))
    data_dir = resolve_data_dir(data_dir)
    if data_dir is None:
        source, raw = f"hub:{HUB_DATASET}", _read_hub(base)
    else:
        path = Path(data_dir).expanduser()
        if not path.is_dir():
            what = "is a file, not a folder" if path.exists() else "does not exist"
            raise DataError(
                f"data folder {path} {what}; pass --data-dir the folder that holds validation.jsonl, "
                f"e.g. {SHARED_DATA_HINT}"
            )
        source, raw = str(path.resolve()), _read_local(path, base)
    total = len(raw)
    if keep is not None:
        raw = [r for r in raw if isinstance(r, dict) and keep(r.get("id", ""))]
    rows, skipped, named = validate_rows(raw, source=f"{source} [{split}]")
    if not raw:  # the file has rows, but none of this derived split
        raise DataError(
            f"{source} [{split}] has no rows: none of the {total} {base} rows falls in {split}; use "
            f"the full MedMCQA {base} file"
        )
    if not rows:
        raise DataError(f"no valid rows in {source} [{split}] ({skipped} invalid, e.g. {', '.join(named)})")
    if limit is not None:
        rows = rows[:limit]
    return LoadedSplit(rows=rows, split=split, source=source, skipped=skipped, skipped_ids=named)
