"""A question file on this machine read into records: CSV, TSV, JSON, JSON lines or Parquet, by `datasets`, with
each way a file can be unreadable refused in one DataError line that says what to do."""

from __future__ import annotations

import csv
import re
import tempfile
from pathlib import Path

from ...errors import DataError
from ..medmcqa import no_progress_bars, refuse_compressed

MAX_UPLOAD_MB = 50
FILE_FORMATS = {".csv": "csv", ".tsv": "tsv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}
SPREADSHEETS = (".xls", ".xlsx", ".xlsm", ".ods")


def read_table(path: str | Path) -> tuple[list[dict], str]:
    """A local file's records and its format (csv, tsv, json, parquet), read by `datasets`."""
    p = Path(path).expanduser()
    ext, empty = p.suffix.lower(), f"{p} holds no questions; export the question file again"
    if not p.is_file():
        raise DataError(f"{p} {'is a folder' if p.is_dir() else 'does not exist'}; check the path to the question file")
    with p.open("rb") as f:  # before the extension: `bank.jsonl.gz` is compressed more than it is unknown
        refuse_compressed(p, f.read(2))
    if ext in SPREADSHEETS:
        raise DataError(f"{p} is a spreadsheet; save it as CSV or Parquet and load that file")
    if ext not in FILE_FORMATS:
        raise DataError(f"{p} has an unsupported extension {ext or '(none)'}; use one of {' '.join(FILE_FORMATS)}")
    size, fmt, options = p.stat().st_size, FILE_FORMATS[ext], {}
    if size > MAX_UPLOAD_MB * 2**20:
        raise DataError(f"{p} is {size / 2**20:.0f} MB, over the {MAX_UPLOAD_MB} MB limit; split it into smaller files")
    raw = p.read_bytes()
    if not raw.strip():
        raise DataError(empty)
    try:  # here, because datasets would name no line
        text = "" if fmt == "parquet" else raw.decode("utf-8").removeprefix("\ufeff")  # Excel's byte order mark
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(f"{p} line {line} is not UTF-8 text; save the file as UTF-8") from None
    null = None if text.lstrip().startswith("[") else re.search(r"^[ \t]*null[ \t\r]*$", text, re.MULTILINE)
    if fmt == "json" and null:  # pyarrow's JSON-lines reader crashes the whole process on such a line
        raise DataError(f"{p} line {text.count(chr(10), 0, null.start()) + 1} is null, not a question; remove it")
    import datasets

    datasets.config.HF_UPDATE_DOWNLOAD_COUNTS = False  # else every local read pings the hub, stalling seconds offline
    if fmt in ("csv", "tsv"):  # all text: pandas would read the option "1.50" as 1.5 and "None" or "NA" as a gap
        header = next(csv.reader(text.splitlines(), delimiter="\t" if fmt == "tsv" else ","), [])
        if "" in header or len(set(header)) < len(header):
            raise DataError(f"{p} has a column without a name or two with one name; give every column its own name")
        options = {
            "delimiter": "\t" if fmt == "tsv" else ",",
            "keep_default_na": False,
            "features": datasets.Features({c: datasets.Value("string") for c in header}),
        }
    # A throw-away cache: the records are kept in memory, and a re-saved file is never served stale.
    with tempfile.TemporaryDirectory() as cache, no_progress_bars():
        try:
            records = datasets.load_dataset(
                "csv" if fmt == "tsv" else fmt, data_files=str(p), split="train", cache_dir=cache, **options
            ).to_list()
        except Exception as e:  # pandas, pyarrow and datasets raise many types for a malformed file
            cause = e.__cause__ or e
            if "corresponds to no data" in str(e) or "BatchSize must be greater than 0" in str(cause):  # no rows
                raise DataError(empty) from None
            reason = " ".join(f"{type(cause).__name__}: {cause}".split())[:150]
            kind = {"json": "JSON", "parquet": "Parquet"}.get(fmt, fmt.upper())
            raise DataError(f"{p} is not a valid {kind} file ({reason}); save it again as {kind}") from None
    return records, fmt
