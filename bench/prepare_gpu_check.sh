#!/usr/bin/env bash
# Run HERE (a machine with PyPI access), once, before bench/gpu_check.sh is run on the GPU machine.
# The GPU machine reaches no network: this puts what it lacks into .gpu/ (git-ignored, carried by the device
# tool, 64 MiB limit): the Python packages its image does not hold, unpacked and trimmed (bitsandbytes keeps
# only its CUDA 13.0 and CPU libraries, matching that image's torch 2.11+cu130; unsloth drops its web "studio";
# torchao drops its compiled kernels, built for other torch versions and loaded only optionally),
# a tokenizer (SmolLM2's; the check builds random weights, so any Llama-family tokenizer will do) and the real
# MedMCQA validation rows (lengths for the scoring check).
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
rm -rf .gpu && mkdir -p .gpu/wheels .gpu/site .gpu/tokenizer
PY=${PYTHON:-.venv/bin/python}
PLAT=(--platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
# One version of each; the image already has torch, transformers 5.17, peft, accelerate, triton, einops, ...
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${PLAT[@]}" \
    -d .gpu/wheels bitsandbytes==0.50.2 unsloth==2026.10.9 unsloth_zoo==2026.10.9 trl==1.14.2 datasets==4.8.5 \
    dill==0.4.1 multiprocess==0.70.19 tyro==1.0.17 docstring_parser==0.18.0 shtab==1.13.0 typeguard==4.6.1 \
    cut_cross_entropy==25.1.1 msgspec torchao
"$PY" - <<'PYEOF'
import pathlib, re, zipfile
site = pathlib.Path(".gpu/site")
drop = [re.compile(p) for p in (r"^bitsandbytes/libbitsandbytes_(cuda(?!130)|rocm)", r"^studio/", r"^unsloth/studio/",
                                     r"^unsloth_cli/", r"^test/", r"^torchao/_C")]
for whl in sorted(pathlib.Path(".gpu/wheels").glob("*.whl")):
    with zipfile.ZipFile(whl) as z:
        for info in z.infolist():
            if not any(p.search(info.filename) for p in drop):
                z.extract(info, site)
PYEOF
rm -rf .gpu/wheels
TOK=$("$PY" -c "from mcqa_core.models.offline import ensure_tiny_llama; print(ensure_tiny_llama())")
cp "$TOK"/tokenizer.json "$TOK"/tokenizer_config.json .gpu/tokenizer/
cp "$TOK"/chat_template.jinja .gpu/tokenizer/ 2>/dev/null || true
cp ../shared/data/medmcqa/validation.jsonl .gpu/
du -sh .gpu
