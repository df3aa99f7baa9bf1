"""A user's own question bank in the app: read from the uploaded bytes (in a temporary folder outside the
repository, deleted at once), saved as JSONL for a training run, and its scored questions as a CSV a user can
download."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import tempfile
from pathlib import Path

from ..data.banks.bank_files import MAX_UPLOAD_MB, read_table
from ..data.prompt import LETTERS, row_options
from ..errors import DataError


def read_upload(name: str, data: bytes) -> tuple[list[dict], list[str], str]:
    """(records, columns, file format) of an uploaded file; bad input is one DataError line."""
    if len(data) > MAX_UPLOAD_MB * 2**20:
        raise DataError(
            f"{name} is {len(data) / 2**20:.0f} MB; the limit is {MAX_UPLOAD_MB} MB: upload a part of "
            "the bank, or evaluate it with `mcqa-eval --bank FILE`"
        )
    if data.startswith(b"\x1f\x8b"):  # read_table would name the temporary copy in its gunzip command
        raise DataError(f"{name} is gzip-compressed, not text; decompress it (gunzip) and upload the file it leaves")
    with tempfile.TemporaryDirectory(prefix="mcqa-upload-") as folder:
        path = Path(folder) / Path(name).name  # the extension tells datasets how to read it
        path.write_bytes(data)
        records, fmt = read_table(path)
    columns = list(records[0]) if records else []
    return records, columns, fmt


def bank_for_training(name: str, rows: list[dict]) -> str:
    """The bank's rows as JSONL in a temporary folder outside the repository, for the trainer: one file per
    content, written whole or not at all (a run may already be reading an earlier one)."""
    folder = Path(tempfile.gettempdir()) / "mcqa-banks"
    folder.mkdir(exist_ok=True)
    digest = hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()[:12]
    path = folder / f"{Path(name).stem}-{digest}.jsonl"
    if not path.exists():
        fd, tmp = tempfile.mkstemp(dir=folder, suffix=".part")  # sessions are threads of one process
        with os.fdopen(fd, "w") as f:
            f.write("".join(json.dumps(r) + "\n" for r in rows))
        os.replace(tmp, path)
    return str(path)


def results_csv(report: dict, rows: list[dict]) -> str:
    """One line per scored question: id, subject, question, options, gold, predicted, P(A..E), correct; and
    with a base comparison in the report, the base model's letter, P(A..E) and correctness beside them."""
    by_id = {str(r.get("id")): r for r in rows}
    preds = report.get("predictions", [])
    base = {str(p.get("id")): p for p in (report.get("base") or {}).get("predictions", [])}
    width = max((len(p.get("probs") or []) for p in preds), default=4)
    letters = LETTERS[:width]

    def probs(p: dict | None) -> list:
        values = list((p or {}).get("probs") or [])
        return values + [""] * (width - len(values))

    def correct(p: dict | None) -> object:
        return "" if p is None or p.get("gold") is None else p["pred"] == p["gold"]

    out = io.StringIO()
    writer = csv.writer(out)
    head = ["id", "subject", "question", "options", "gold", "predicted", *(f"p_{L}" for L in letters), "correct"]
    if base:
        head += ["base_predicted", *(f"base_p_{L}" for L in letters), "base_correct", "changed"]
    writer.writerow(head)
    for p in preds:
        row = by_id.get(str(p["id"]), {})
        line = [
            p["id"],
            p.get("subject") or row.get("subject_name") or "",
            row.get("question", p.get("question", "")),
            " | ".join(row_options(row)),
            p.get("gold") or "",
            p["pred"],
            *probs(p),
            correct(p),
        ]
        if base:
            b = base.get(str(p["id"]))
            line += [(b or {}).get("pred", ""), *probs(b), correct(b), b is not None and b.get("pred") != p["pred"]]
        writer.writerow(line)
    return out.getvalue()
