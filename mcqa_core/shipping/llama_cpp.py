"""llama.cpp's own tools, as `scripts/install_llama_cpp.sh` installs them: its HF -> GGUF converter and its
OpenAI-compatible server (`llama-server`), started on a GGUF file for the export's agreement check, the tests
and the serving benchmark.

    with LlamaServer("exports/m/model-q8_0.gguf") as server:
        OpenAIScorer(server.endpoint, server.alias).score(rows)
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from ..errors import ExportError

REPO = Path(__file__).resolve().parents[2]
GGUF_TYPES = ("f16", "q8_0", "bf16", "f32")  # what the converter writes itself (no separate quantize step)
INSTALL_HINT = "run `make setup-serving` (scripts/install_llama_cpp.sh builds it from PyPI's llama-cpp-python)"
CONVERTER_HINT = "run `make setup` (scripts/install_llama_cpp.sh --converter fetches it, no build)"


def llama_cpp_dir() -> Path:
    return Path(os.environ.get("MCQA_LLAMA_CPP_DIR") or REPO / ".venv" / "llama.cpp")


def converter() -> Path | None:
    path = llama_cpp_dir() / "convert_hf_to_gguf.py"
    return path if path.exists() else None


def server_binary() -> str | None:
    local = Path(sys.executable).parent / "llama-server"
    return str(local) if local.exists() else shutil.which("llama-server")


def supported_architectures() -> set[str]:
    """The `architectures` names the installed converter registers (read from its source, no import)."""
    root = converter()
    if root is None:
        return set()
    names: set[str] = set()
    for source in [root, *sorted((root.parent / "conversion").glob("*.py"))]:
        for args in re.findall(r"ModelBase\.register\(([^)]*)\)", source.read_text(errors="replace")):
            names.update(re.findall(r"[\"']([A-Za-z0-9_]+)[\"']", args))
    return names


def architecture_problem(config: dict) -> str | None:
    archs = config.get("architectures") or []
    supported = supported_architectures()
    if archs and supported and not set(archs) & supported:
        return (
            f"llama.cpp's converter does not support the architecture {', '.join(archs)}; export the "
            "safetensors format instead (--format safetensors) and serve it with vLLM"
        )
    return None


def gguf_ready_tokenizer(tok: dict) -> dict | None:
    """A byte-level BPE tokenizer.json declared GPT-2 style, or None when it needs no change.

    transformers rebuilds a GGUF's BPE vocabulary (the offline SmolLM2) with byte_fallback on and a
    SentencePiece-style decoder; token ids are the same either way (docs/serving.md, "GGUF export"), but
    the converter would take it for a SentencePiece vocabulary and llama.cpp would tokenize differently.
    Tokenizers that are not byte-level (Llama 2's SentencePiece) are left alone."""
    model, pre = tok.get("model") or {}, tok.get("pre_tokenizer") or {}
    if not (model.get("type") == "BPE" and model.get("byte_fallback") and pre.get("type") == "ByteLevel"):
        return None
    return {
        **tok,
        "model": {**model, "byte_fallback": False},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
    }


def _converter_view(hf_folder: Path, view: Path) -> None:
    """`view` holding links to `hf_folder`'s files, with a GGUF-ready tokenizer.json where it needs one: the
    converter reads a folder, and the model's own folder (the offline cache, an export) stays as it is."""
    for item in hf_folder.iterdir():
        fixed = (
            gguf_ready_tokenizer(json.loads(item.read_text(encoding="utf-8")))
            if item.name == "tokenizer.json"
            else None
        )
        if fixed is None:
            (view / item.name).symlink_to(item.resolve())
        else:
            (view / item.name).write_text(json.dumps(fixed, ensure_ascii=False), encoding="utf-8")


def convert(hf_folder: Path, out_file: Path, gguf_type: str, log=print) -> None:
    """Write `out_file` (GGUF of type `gguf_type`) from a transformers folder, with llama.cpp's converter."""
    script = converter()
    if script is None:
        raise ExportError(f"llama.cpp's converter is not installed; {CONVERTER_HINT}")
    log(f"[gguf] converting to {gguf_type} with llama.cpp's convert_hf_to_gguf.py")
    with tempfile.TemporaryDirectory(dir=out_file.parent, prefix=".gguf-source-") as view:
        source = Path(view) / Path(hf_folder).name  # the converter names the model after its folder
        source.mkdir()
        _converter_view(Path(hf_folder), source)
        cmd = [sys.executable, str(script), str(source), "--outtype", gguf_type, "--outfile", str(out_file)]
        done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0 or not out_file.exists():
        tail = [line for line in done.stderr.splitlines() if "ERROR" in line or "Error" in line][
            -1:
        ] or done.stderr.strip().splitlines()[-1:]
        raise ExportError(f"llama.cpp's converter failed on {Path(hf_folder).name}: {' '.join(tail)[:300]}")


def cpu_summary() -> str:
    """The CPU and the vector/matrix features llama.cpp's kernels choose between, for any report of a crash."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown CPU"
    name = next(
        (line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "unknown CPU"
    )
    flags = set(next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), []))
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16")
    return f"{name}; {' '.join(f for f in wanted if f in flags) or 'no AVX2'}"


class _Crashed(Exception):
    """llama-server died on a signal while it loaded the model."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LlamaServer:
    """`llama-server` on a GGUF file, on a free local port, for as long as the `with` block runs."""

    def __init__(
        self,
        gguf: str | Path,
        *,
        alias: str = "mcqa",
        parallel: int = 4,
        threads: int | None = None,
        context: int = 4096,
        startup_timeout: float = 120.0,
    ):
        self.gguf, self.alias, self.parallel, self.threads = Path(gguf), alias, parallel, threads
        self.context, self.startup_timeout = context, startup_timeout
        self.port = _free_port()
        self.process: subprocess.Popen | None = None
        self.repack = True  # False once a crash made it start with --no-repack
        self.log = Path(tempfile.gettempdir()) / f"llama-server-{self.port}.log"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> LlamaServer:
        try:
            return self._start(repack=True)
        except _Crashed:
            # llama.cpp's CPU weight repacking (and AMX, when a build has it) has crashed on some CPUs while the
            # plain kernels load the same file; retry once without it rather than fail the export.
            try:
                return self._start(repack=False)
            except _Crashed as crash:
                raise ExportError(
                    f"llama-server crashed ({crash}) loading {self.gguf.name} on this CPU "
                    f"({cpu_summary()}), with and without weight repacking; rebuild it with "
                    f"`make setup-serving` or serve the f16 file; its log: {self.log}"
                ) from None

    def _start(self, repack: bool) -> LlamaServer:
        binary = server_binary()
        if binary is None:
            raise ExportError(f"llama-server is not installed; {INSTALL_HINT}")
        # --parallel slots share the context: each gets context/parallel tokens, enough for a question.
        cmd = [
            binary,
            "-m",
            str(self.gguf),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--alias",
            self.alias,
            "-c",
            str(self.context),
            "--parallel",
            str(self.parallel),
            "--no-webui",
        ]
        if self.threads:
            cmd += ["-t", str(self.threads)]
        if not repack:
            cmd.append("--no-repack")
        self.repack = repack
        with self.log.open("w") as log:  # the server writes to its own copy of the handle
            self.process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + self.startup_timeout
        while time.time() < deadline:
            code = self.process.poll()
            if code is not None and code < 0:
                raise _Crashed(
                    f"signal {-code}, {signal.Signals(-code).name}"
                    if -code in signal.valid_signals()
                    else f"signal {-code}"
                )
            if code is not None:
                raise ExportError(f"llama-server exited at start (code {code}); its log: {self.log}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:  # not listening yet, or 503 while the model loads
                pass
            time.sleep(0.2)
        self.__exit__(None, None, None)
        raise ExportError(f"llama-server did not become ready in {self.startup_timeout:g} s; its log: {self.log}")

    def __exit__(self, *exc) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
