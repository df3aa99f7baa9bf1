"""Issue 40's weak cases: inputs that were refused, but with a line that did not say what to do. Each is now one
"error:" line with exit code 2 that names the next step, before any model loads (no test here loads one)."""

from __future__ import annotations

import gzip
import http.server
import json
import re
import threading

import pytest

from mcqa_core.cli import eval_command as eval_cli
from mcqa_core.cli import train_command as train_cli
from mcqa_core.data.banks.bank_rows import load_bank
from mcqa_core.data.medmcqa import load_split
from mcqa_core.errors import DataError, McqaError
from mcqa_core.evaluation.eval_rows import EvalRows
from mcqa_core.evaluation.measure import measure, shuffle_limit
from mcqa_core.evaluation.protocol import EvalProtocol


def _refused(capsys, main, argv, *words) -> str:
    capsys.readouterr()
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    errors = re.findall(r"error: [^\r\n]*", err)
    assert code == 2 and len(errors) == 1 and "Traceback" not in err, err[-3000:]
    for word in words:
        assert word in errors[0], errors[0]
    return errors[0]


def _rows(n: int, options: int = 4) -> list[dict]:
    keys = ("opa", "opb", "opc", "opd", "ope")[:options]
    return [dict({k: f"{k}{i}" for k in keys}, id=f"r{i}", question=f"q {i}?", cop=i % options) for i in range(n)]


@pytest.mark.parametrize("text", ["model: [1, 2]\n", "train: 5\n"])
def test_a_group_that_is_not_a_mapping_says_so(tmp_path, capsys, text):
    config = tmp_path / "run.yaml"
    config.write_text(text)
    group = text.split(":")[0]
    line = _refused(capsys, train_cli.main, ["--config", config], f"group '{group}' must be a mapping of settings")
    assert "unknown setting" not in line


def test_a_config_that_is_a_directory_says_so(tmp_path, capsys):
    _refused(capsys, train_cli.main, ["--config", tmp_path], f"{tmp_path} is a directory", "YAML file")


def test_a_gzip_data_file_is_named_as_compressed(tmp_path):
    text = "".join(json.dumps(r) + "\n" for r in _rows(4)).encode()
    gz = tmp_path / "bank.jsonl.gz"
    gz.write_bytes(gzip.compress(text))
    fix = re.escape(f"`gunzip {gz}` and use {gz.with_suffix('')}")
    with pytest.raises(DataError, match=rf"bank.jsonl.gz is gzip-compressed.*{fix}"):
        load_bank(gz)
    plain_name = tmp_path / "bank.jsonl"
    plain_name.write_bytes(gzip.compress(text))
    with pytest.raises(DataError, match="gzip-compressed.*" + re.escape(f"`mv {plain_name} {plain_name}.gz && gunzip")):
        load_bank(plain_name)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "validation.jsonl").write_bytes(gzip.compress(text))
    with pytest.raises(DataError, match="validation.jsonl is gzip-compressed, not text; decompress it"):
        load_split("validation", data_dir)


def test_shuffle_options_is_capped_at_the_distinct_orders(tmp_path, capsys):
    assert shuffle_limit(_rows(3)) == 23 and shuffle_limit(_rows(2) + _rows(2, options=3)) == 5
    bank = tmp_path / "bank.jsonl"
    bank.write_text("".join(json.dumps(r) + "\n" for r in _rows(4)))
    argv = ["--base-model", "nowhere-model", "--bank", bank, "--output", tmp_path / "r.json"]
    _refused(capsys, eval_cli.main, [*argv, "--shuffle-options", "100000"], "only 23 other orders", "23 or less")
    with pytest.raises(McqaError, match="over the 23 distinct orders"):  # the library refuses it too
        measure(object(), EvalRows(_rows(4)), EvalProtocol(shuffle_options=24))


def test_shots_with_a_whole_bank_suggest_the_heldout_split(tmp_path, capsys):
    bank = tmp_path / "bank.jsonl"
    bank.write_text("".join(json.dumps(r) + "\n" for r in _rows(12)))
    argv = ["--base-model", "nowhere-model", "--bank", bank, "--shots", "3", "--output", tmp_path / "r.json"]
    _refused(capsys, eval_cli.main, argv, "0 found", "pass --split heldout")


class _WebPages(http.server.BaseHTTPRequestHandler):
    """A plain web server: an HTML page for every path, with the server's `status`."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        page = b"<!DOCTYPE html>\n<html><head><title>Error</title></head><body><h1>Not Found</h1></body></html>\n"
        self.send_response(self.server.status)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(page)))
        self.end_headers()
        self.wfile.write(page)


@pytest.mark.parametrize("status", [404, 200])
def test_an_endpoint_that_is_a_plain_web_server_is_named_so_without_its_html(tmp_path, data_dir, capsys, status):
    from mcqa_core.evaluation.openai_backend import BackendError, OpenAIScorer

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _WebPages)
    server.status = status
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with pytest.raises(BackendError, match=r"is not an OpenAI-compatible server: /v1/models answered"):
            OpenAIScorer(url, "mcqa", timeout=5).check()
        argv = ["--backend", "openai", "--endpoint", url, "--model", "mcqa", "--data-dir", data_dir]
        line = _refused(capsys, eval_cli.main, [*argv, "--output", tmp_path / "r.json"], "not an OpenAI-compatible")
    finally:
        server.shutdown()
    assert "<" not in line and "check --model" not in line and "point --endpoint at" in line
    assert (f"HTTP {status} with a page" in line) == (status == 404)


def test_a_prompt_token_limit_below_the_prompt_itself_is_refused_before_the_model_loads(
    tmp_path, data_dir, tiny_model_path, tokenizer, capsys, monkeypatch
):
    from mcqa_core.data.features import encode_prompt
    from mcqa_core.models import inference

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(inference, "load_model", no_model)
    argv = ["--base-model", tiny_model_path, "--data-dir", data_dir, "--output", tmp_path / "r.json"]
    line = _refused(capsys, eval_cli.main, [*argv, "--max-prompt-tokens", "3"], "cannot hold even the course prompt")
    need = int(re.search(r"pass --max-prompt-tokens (\d+) or more", line).group(1))
    row = {"question": "Which?", "opa": "a", "opb": "b", "opc": "c", "opd": "d"}  # the one-word question it names
    assert encode_prompt(tokenizer, row, need) is not None and encode_prompt(tokenizer, row, need - 1) is None
    assert not (tmp_path / "r.json").exists()


def test_repeated_bank_ids_name_a_way_out_that_exists(tmp_path):
    records = [{"id": i, "question": f"Q{n}", "choices": ["a", "b"], "answer": 0} for n, i in enumerate("xxy")]
    bank = tmp_path / "bank.jsonl"
    bank.write_text("".join(json.dumps(r) + "\n" for r in records))
    with pytest.raises(DataError) as refused:
        load_bank(bank)
    assert "rename column 'id' in the file" in str(refused.value) and "map no id column" not in str(refused.value)
    # doing what it says: no id column is read, the rows are numbered
    bank.write_text("".join(json.dumps({"source_id": r.pop("id"), **r}) + "\n" for r in records))
    assert [r["id"] for r in load_bank(bank).rows] == ["row-1", "row-2", "row-3"]


def test_more_trainable_layers_than_the_base_has_are_refused_from_its_config(tmp_path, tiny_model_path, capsys):
    import json as _json
    from pathlib import Path

    layers = _json.loads((Path(tiny_model_path) / "config.json").read_text())["num_hidden_layers"]
    argv = ["--preset", "smoke", "--peft-method", "subset", "--no-load-in-4bit", "--output-dir", tmp_path / "run"]
    _refused(
        capsys, train_cli.main, [*argv, "--trainable-layers", layers + 1], f"decoder layers; give at most {layers}"
    )
    assert not (tmp_path / "run").exists()  # refused before anything was written
