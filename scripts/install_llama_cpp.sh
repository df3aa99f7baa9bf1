#!/usr/bin/env bash
# llama.cpp from PyPI's llama-cpp-python source package (the one registry release that carries llama.cpp's
# source): its HF -> GGUF converter for `mcqa-export --format gguf`, and its OpenAI-compatible `llama-server`,
# built for this CPU, for the serving tests and benchmark. Idempotent; the build takes minutes on 2 cores.
#   .venv/llama.cpp/convert_hf_to_gguf.py (+ conversion/, gguf-py/)   .venv/bin/llama-server
# With --converter (what `make app` runs): the converter alone, a Python script that needs no build (seconds).
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=0.3.36  # llama-cpp-python; the llama.cpp it vendors is what we build
dest=.venv/llama.cpp
stamp=$dest/.installed
converter_stamp=$dest/.converter
fetch() {  # llama-cpp-python's source into $work: the vendored llama.cpp at $src
  .venv/bin/pip download -q --no-deps --no-binary :all: "llama-cpp-python==$VERSION" -d "$work" 2>&1 | grep -v "^WARNING: Location" || true
  tar xzf "$work/llama_cpp_python-$VERSION.tar.gz" -C "$work"
  src=$work/llama_cpp_python-$VERSION/vendor/llama.cpp
}
if [ "${1:-}" = "--converter" ]; then
  if [ "$(cat "$converter_stamp" 2>/dev/null)" = "$VERSION" ] && [ -f "$dest/convert_hf_to_gguf.py" ]; then
    exit 0
  fi
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  echo "llama.cpp: fetching llama-cpp-python==$VERSION's source for its HF -> GGUF converter (once)"
  fetch
  mkdir -p "$dest"
  rm -rf "$dest/conversion" "$dest/gguf-py"
  cp -r "$src/convert_hf_to_gguf.py" "$src/conversion" "$src/gguf-py" "$src/LICENSE" "$dest/"
  echo "$VERSION" > "$converter_stamp"
  exit 0
fi
case "$(uname -m)" in
  x86_64)
    if grep -qw avx2 /proc/cpuinfo; then
      cpu_flags="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON"
    else  # an x86-64 CPU before AVX2
      cpu_flags="-DGGML_NATIVE=OFF -DGGML_AVX=OFF -DGGML_AVX2=OFF -DGGML_FMA=OFF -DGGML_F16C=OFF -DGGML_BMI2=OFF"
    fi ;;
  *) cpu_flags="-DGGML_NATIVE=ON" ;;
esac
want="$VERSION $cpu_flags"
if [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] && [ -x .venv/bin/llama-server ]; then
  exit 0
fi
for tool in cmake c++; do
  command -v "$tool" >/dev/null || { echo "error: $tool is needed to build llama.cpp's server (apt-get install cmake g++)"; exit 1; }
done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "llama.cpp: fetching llama-cpp-python==$VERSION's source and building llama-server (a few minutes, once)"
fetch
log=$work/build.log
{
  cmake -S "$src" -B "$work/build" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF -DLLAMA_CURL=OFF \
    -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF $cpu_flags
  cmake --build "$work/build" --target llama-server -j"$(nproc)"
} > "$log" 2>&1 || { tail -40 "$log"; echo "error: building llama-server failed (log above)"; exit 1; }
rm -rf "$dest"
mkdir -p "$dest"
cp -r "$src/convert_hf_to_gguf.py" "$src/conversion" "$src/gguf-py" "$src/LICENSE" "$dest/"
install -m 755 "$work/build/bin/llama-server" .venv/bin/llama-server
echo "$want" > "$stamp"
echo "$VERSION" > "$converter_stamp"
echo "llama.cpp: $(.venv/bin/llama-server --version 2>&1 | grep -m1 version)"
