"""Serving through an OpenAI-compatible server: llama.cpp's real `llama-server` (installed by `make test`'s
set-up) on the offline SmolLM2 converted by llama.cpp's own converter, against in-process scoring; the GGUF
export; and a server that is down, slow, unknown to the model name or silent about log-probabilities."""

from __future__ import annotations

import http.server
import json
import os
import threading
import time

import pytest

from mcqa_core.evaluation.openai_backend import BackendError, OpenAIScorer
from mcqa_core.shipping import llama_cpp

from .conftest import REPO, save_random_lora

NEEDS_LLAMA_CPP = pytest.mark.skipif(
    (llama_cpp.converter() is None or llama_cpp.server_binary() is None)
    and os.environ.get("MCQA_REQUIRE_LLAMA_CPP") != "1",
    reason="llama.cpp is not installed: run `make setup-serving`",
)


@pytest.fixture(scope="session")
def smollm2_gguf(tmp_path_factory):
    from mcqa_core.models.offline import ensure_smollm2

    out = tmp_path_factory.mktemp("gguf") / "smollm2-f16.gguf"
    llama_cpp.convert(ensure_smollm2(), out, "f16")
    return out


@NEEDS_LLAMA_CPP
def test_llama_server_answers_as_in_process_scoring_on_heldout_rows(smollm2_gguf, data_dir):
    from mcqa_core.data.medmcqa import load_split
    from mcqa_core.evaluation.eval_rows import EvalRows
    from mcqa_core.evaluation.measure import measure
    from mcqa_core.evaluation.protocol import EvalProtocol
    from mcqa_core.evaluation.scorers import LetterScorer, agreement, max_prob_diff
    from mcqa_core.models.inference import load_model

    rows = load_split("heldout", str(data_dir), 100).rows
    local = load_model(None, "smollm2-135m", load_in_4bit=False)
    expected = measure(LetterScorer(local), EvalRows(rows), EvalProtocol())
    with llama_cpp.LlamaServer(smollm2_gguf, alias="smollm2") as server:
        scorer = OpenAIScorer(server.endpoint, "smollm2", tokenizer=local.tokenizer)
        scorer.check()
        served = measure(scorer, EvalRows(rows), EvalProtocol())
    ours = [p["pred"] for p in expected["predictions"]]
    theirs = [p["pred"] for p in served["predictions"]]
    same = sum(a == b for a, b in zip(ours, theirs)) / len(rows)
    assert same >= 0.95, f"llama-server (f16) and in-process (fp32) agree on only {same:.0%}"
    assert served["meta"]["backend"] == "openai" and served["n"] == 100
    # the probabilities, not only the argmax, are the model's own: f16 weights and kernels move them a little
    # (0.07 at most seen on these rows)
    as_scores = [type("S", (), {"probs": p["probs"], "pred": p["pred"]}) for p in served["predictions"]]
    reference = [type("S", (), {"probs": p["probs"], "pred": p["pred"]}) for p in expected["predictions"]]
    assert agreement(as_scores, reference) == same and max_prob_diff(as_scores, reference) < 0.15


@pytest.fixture(scope="module")
def smollm2_adapter(tmp_path_factory):
    """A LoRA of the course's shape on SmolLM2 with small random B (no training): it moves the answers a little,
    and the model still answers with letters (a random tiny model's letters are not among the server's top 20)."""
    from mcqa_core.data.prompt import PROMPT_VERSION
    from mcqa_core.models.offline import ensure_smollm2

    return save_random_lora(
        ensure_smollm2(),
        tmp_path_factory.mktemp("adapters") / "smollm2-lora",
        {
            "base_model": "smollm2-135m",
            "prompt_version": PROMPT_VERSION,
            "load_in_4bit": False,
            "data": {"eval_split": "heldout"},
        },
        r=16,
        b_std=0.01,
    )


@NEEDS_LLAMA_CPP
def test_gguf_export_writes_checked_files_for_llama_cpp(smollm2_adapter, tmp_path, data_dir):
    from mcqa_core.shipping.merge import ExportArgs, export_merged

    adapter = smollm2_adapter
    out = tmp_path / "gguf"
    record = export_merged(
        ExportArgs(
            adapter=str(adapter),
            out=str(out),
            format="gguf",
            gguf_types="f16,q8_0",
            check_rows=16,
            data_dir=str(data_dir),
        ),
        log=lambda *_: None,
    )
    files = record["merged"]["gguf"]
    assert sorted(p.name for p in out.glob("*.gguf")) == ["model-f16.gguf", "model-q8_0.gguf"]
    assert not (out / "hf").exists() and not (out / "model.safetensors").exists()
    assert files["q8_0"]["bytes"] < files["f16"]["bytes"]
    assert files["f16"]["agreement_with_merged"] >= 0.9 and files["f16"]["max_prob_diff"] < 0.15
    assert files["q8_0"]["agreement_with_merged"] >= 0.8  # 8-bit weights: near-ties may flip
    assert json.loads((out / "mcqa_run.json").read_text())["artifact"] == "gguf"
    assert "llama-server -m model-q8_0.gguf" in (out / "README.md").read_text()
    modelfile = (out / "Modelfile").read_text()  # for Ollama: the same file, the raw prompt, greedy
    assert "\nFROM ./model-q8_0.gguf\n" in modelfile and 'TEMPLATE """{{ .Prompt }}"""' in modelfile
    assert "#   ### Answer:" in modelfile and "PARAMETER temperature 0" in modelfile


def test_gguf_export_refuses_an_architecture_the_converter_does_not_know(monkeypatch):
    from mcqa_core.shipping.gguf import gguf_problems

    monkeypatch.setattr(llama_cpp, "supported_architectures", lambda: {"LlamaForCausalLM"})
    monkeypatch.setattr(llama_cpp, "converter", lambda: REPO / "convert_hf_to_gguf.py")
    problems = gguf_problems(["q4_k"], {"architectures": ["FancyNewForCausalLM"]}, 0)
    assert any("--gguf-types" in p for p in problems)
    assert any("does not support the architecture FancyNewForCausalLM" in p for p in problems)
    assert gguf_problems(["f16"], {"architectures": ["LlamaForCausalLM"]}, 0) == []


# ------------------------------------------------------------------ a fake server for the ways serving fails


class _FakeServer(http.server.ThreadingHTTPServer):
    """Serves /v1/models and /v1/completions as `behaviour` says: ok, no-logprobs, slow, no-letters."""

    def __init__(self, behaviour, letter_ids: dict[str, int] | None = None):
        self.behaviour = behaviour
        self.token_ids = {**TOKEN_IDS, **(letter_ids or {})}  # a real tokenizer's letter ids, when the client has one
        super().__init__(("127.0.0.1", 0), _Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


# The fake model's next-token logits: "B" leads, then 30 filler tokens, so "C" and "D" fall outside a top 20.
LOGITS = {"B": 6.0, "A": 3.5, **{f"w{i}": 3.0 - i / 100 for i in range(30)}, "C": -1.0, "D": -2.5}
TOKEN_IDS = {text: i for i, text in enumerate(LOGITS)}


def _top(logits: dict, k: int = 20) -> dict:
    """The k most likely tokens with their log-probabilities (softmax over all of `logits`)."""
    import math

    z = math.log(sum(math.exp(v) for v in logits.values()))
    return {t: v - z for t, v in sorted(logits.items(), key=lambda kv: -kv[1])[:k]}


class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def _send(self, body, code=200):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self._send({"object": "list", "data": [{"id": "mcqa"}]})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        how = self.server.behaviour
        if self.path == "/tokenize":  # beside /v1, as on vLLM and llama-server
            return self._send({"tokens": [self.server.token_ids[body["content"]]]})
        if how == "slow":
            time.sleep(2)
        if body["model"] != "mcqa":
            return self._send({"error": {"message": f"The model `{body['model']}` does not exist."}}, 404)
        if how == "no-logprobs":
            return self._send({"choices": [{"text": "B", "logprobs": None}]})
        logits = dict(LOGITS)
        if body.get("logit_bias") and how != "ignores-bias":
            by_id = {i: t for t, i in self.server.token_ids.items()}
            for token_id, bias in body["logit_bias"].items():
                logits[by_id[int(token_id)]] += bias
        top = _top(logits)
        if how == "llama.cpp" and body.get("post_sampling_probs"):  # probabilities after the sampling chain
            import math

            content = [{"token": "B", "top_probs": [{"token": t, "prob": math.exp(v)} for t, v in top.items()]}]
            return self._send({"choices": [{"text": "B", "logprobs": {"content": content}}]})
        if how == "llama.cpp":
            content = [{"token": "B", "top_logprobs": [{"token": t, "logprob": v} for t, v in top.items()]}]
            return self._send({"choices": [{"text": "B", "logprobs": {"content": content}}]})
        self._send({"choices": [{"text": "B", "logprobs": {"top_logprobs": [top]}}]})  # vLLM's shape


ROW = {
    "id": "q1",
    "question": "Which organ pumps blood?",
    "opa": "Lung",
    "opb": "Heart",
    "opc": "Liver",
    "opd": "Skin",
    "cop": 1,
}


@pytest.fixture()
def fake():
    servers = []

    def start(behaviour):
        servers.append(_FakeServer(behaviour))
        return servers[-1]

    yield start
    for s in servers:
        s.shutdown()


@pytest.mark.parametrize("shape", ["ok", "llama.cpp"])
def test_letters_outside_the_servers_top_list_get_their_probability_through_logit_bias(fake, shape):
    """Without a local tokenizer the letter ids come from the server's /tokenize (the real llama-server test below
    takes them from the model's tokenizer)."""
    import math

    (score,) = OpenAIScorer(fake(shape).endpoint, "mcqa").score([ROW])
    letters = [LOGITS[L] for L in "ABCD"]
    expected = [math.exp(v) / sum(math.exp(x) for x in letters) for v in letters]
    assert score.pred == "B" and score.correct and sum(score.probs) == pytest.approx(1)
    assert score.probs == pytest.approx(expected, rel=1e-6) and min(score.probs) > 0
    full = sum(math.exp(v) for v in LOGITS.values())
    assert score.letter_mass == pytest.approx(sum(math.exp(v) for v in letters) / full, rel=1e-6)


@pytest.mark.parametrize(
    "behaviour, model, timeout, message",
    [
        ("ok", "other", 5, "does not serve 'other' (it serves: mcqa)"),
        ("no-logprobs", "mcqa", 5, "returned no log-probabilities"),
        ("ignores-bias", "mcqa", 5, "ignores logit_bias in its log-probabilities"),
        ("slow", "mcqa", 0.5, "did not answer /completions within 0.5 s"),
    ],
)
def test_a_server_that_cannot_score_gets_one_clear_line(fake, behaviour, model, timeout, message):
    scorer = OpenAIScorer(fake(behaviour).endpoint, model, timeout=timeout)
    with pytest.raises(BackendError) as caught:
        scorer.check()
        scorer.score([ROW])
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_a_server_that_is_down_is_refused_before_scoring(tmp_path):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(BackendError, match=r"cannot reach the server at http://127.0.0.1:\d+/v1 .*start it"):
        OpenAIScorer(f"http://127.0.0.1:{port}", "mcqa", timeout=2).check()


def test_mcqa_eval_through_a_server_writes_its_report_and_refuses_an_unknown_name(fake, tmp_path, data_dir, capsys):
    from mcqa_core.cli.eval_command import main

    server = fake("ok")
    common = ["--backend", "openai", "--endpoint", server.endpoint, "--data-dir", str(data_dir), "--limit", "5"]
    assert main([*common, "--model", "gpt-x", "--output", str(tmp_path / "no.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and "does not serve 'gpt-x' (it serves: mcqa)" in err[-1]
    assert not (tmp_path / "no.json").exists()
    assert main([*common, "--model", "mcqa", "--output", str(tmp_path / "r.json")]) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["n"] == 5 and report["meta"]["backend"] == "openai" and report["meta"]["served_model"] == "mcqa"
    assert {p["pred"] for p in report["predictions"]} == {"B"}


# ------------------------------------------------------------------ a server binary that crashes while loading

FAKE_SERVER = """#!{python}
import http.server, os, signal, sys
if "--no-repack" not in sys.argv and {crash_with_repack} or {always_crash}:
    os.kill(os.getpid(), signal.SIGSEGV)  # as llama.cpp's AMX path did on a Xeon, loading a q8_0 file
port = int(sys.argv[sys.argv.index("--port") + 1])

class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass

http.server.HTTPServer(("127.0.0.1", port), Health).serve_forever()
"""


@pytest.mark.parametrize("always_crash", [False, True])
def test_a_server_that_crashes_loading_is_retried_without_repacking_then_named_in_one_line(
    tmp_path, monkeypatch, always_crash
):
    import sys

    from mcqa_core.errors import ExportError

    binary = tmp_path / "llama-server"
    binary.write_text(FAKE_SERVER.format(python=sys.executable, crash_with_repack=True, always_crash=always_crash))
    binary.chmod(0o755)
    monkeypatch.setattr(llama_cpp, "server_binary", lambda: str(binary))
    gguf = tmp_path / "model-q8_0.gguf"
    gguf.write_bytes(b"GGUF")
    if not always_crash:
        with llama_cpp.LlamaServer(gguf, startup_timeout=30) as server:
            assert server.repack is False and server.process.poll() is None
        return
    with pytest.raises(ExportError) as caught:
        with llama_cpp.LlamaServer(gguf, startup_timeout=30):
            pass
    message = str(caught.value)
    assert "\n" not in message and "signal 11, SIGSEGV" in message and "model-q8_0.gguf" in message
    assert llama_cpp.cpu_summary() in message


@NEEDS_LLAMA_CPP
def test_a_random_tiny_model_served_by_llama_server_gets_every_letter_and_its_smoke_adapter_exports(
    tiny_model_path, smoke_adapter, tmp_path, data_dir, monkeypatch
):
    """A random model ranks no letter in its top 20 next tokens: the letters come through logit_bias, sum to 1,
    and match in-process scoring; exporting the smoke adapter (on that model) to GGUF then works."""
    from mcqa_core.models.precision_rule import CPU_BF16_ENV

    # In-process scoring in fp32: bf16 matmuls alone move a random model's near-uniform letters by ~0.03.
    monkeypatch.setenv(CPU_BF16_ENV, "0")
    from mcqa_core.data.medmcqa import load_split
    from mcqa_core.evaluation.eval_rows import EvalRows
    from mcqa_core.evaluation.measure import measure
    from mcqa_core.evaluation.protocol import EvalProtocol
    from mcqa_core.evaluation.scorers import LetterScorer
    from mcqa_core.models.inference import load_model
    from mcqa_core.shipping.merge import ExportArgs, export_merged

    rows = load_split("heldout", str(data_dir), 24).rows
    local = load_model(None, tiny_model_path, load_in_4bit=False)
    expected = measure(LetterScorer(local), EvalRows(rows), EvalProtocol())["predictions"]
    gguf = tmp_path / "tiny-f16.gguf"
    llama_cpp.convert(tiny_model_path, gguf, "f16")
    with llama_cpp.LlamaServer(gguf, alias="tiny") as server:
        served = OpenAIScorer(server.endpoint, "tiny", tokenizer=local.tokenizer).score(rows)
    assert all(len(s.probs) == 4 and min(s.probs) > 0 and abs(sum(s.probs) - 1) < 1e-6 for s in served)
    assert max(s.letter_mass for s in served) < 0.05  # the letters are not what this model says next
    worst = max(abs(a - b) for s, e in zip(served, expected) for a, b in zip(s.probs, e["probs"]))
    assert worst < 0.02, f"llama-server's letters differ from in-process scoring by up to {worst:.3f}"

    adapter, _ = smoke_adapter
    record = export_merged(
        ExportArgs(
            adapter=str(adapter),
            out=str(tmp_path / "smoke-gguf"),
            format="gguf",
            gguf_types="f16",
            check_rows=16,
            data_dir=str(data_dir),
        ),
        log=lambda *_: None,
    )
    check = record["merged"]["gguf"]["f16"]
    assert (tmp_path / "smoke-gguf" / "model-f16.gguf").exists() and check["max_prob_diff"] < 0.02
