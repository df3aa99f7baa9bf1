#!/usr/bin/env bash
# Run ON the GPU machine, from the repository root, after bench/prepare_gpu_check.sh ran here and with
# `.gpu` carried, e.g. through the device tool:
#   run(command="bash bench/gpu_check.sh", carry=[".gpu"], timeout_s=540)
# Target: under 8 minutes on one H200, no network. Prints one table and writes $OUT/gpu_check.json if OUT is set.
set -uo pipefail
export PYTHONPATH="$PWD/.gpu/site:$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 \
       TOKENIZERS_PARALLELISM=false UNSLOTH_DISABLE_STATISTICS=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 -c "import torch, transformers, peft, bitsandbytes; print('torch', torch.__version__, 'cuda', torch.version.cuda, '| transformers', transformers.__version__, '| peft', peft.__version__, '| bitsandbytes', bitsandbytes.__version__)"
timeout 470 python3 bench/gpu_check.py --tokenizer .gpu/tokenizer --rows .gpu/validation.jsonl \
    ${OUT:+--json "$OUT/gpu_check.json"} "$@"
