"""Fine-tune a LoRA adapter for MedMCQA: `python train_adapter.py --help` (the same command as `mcqa-train`).

    python train_adapter.py --preset smoke --output-dir adapters/smoke        # seconds, tiny random Llama
    python train_adapter.py --preset cpu-demo --output-dir adapters/cpu-demo  # offline SmolLM2 on CPU
    python train_adapter.py --output-dir adapters/llama-3.2-1b-medmcqa        # the course recipe, GPU + hub

The command lives in mcqa_core/cli/train_command.py.
"""

import sys

from mcqa_core.cli.train_command import main

if __name__ == "__main__":
    sys.exit(main())
