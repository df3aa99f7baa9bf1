"""Merge a LoRA adapter into its base model and save a standalone model folder (`mcqa-export`).

    # merge, check 64 held-out questions answer alike, save safetensors + tokenizer + card
    mcqa-export --adapter adapters/cpu-demo --out exports/cpu-demo-merged

    # half the size on disk (the agreement check then runs in bf16 too)
    mcqa-export --adapter adapters/cpu-demo --out exports/cpu-demo-bf16 --dtype bfloat16

    # GGUF files for llama.cpp / Ollama (llama.cpp's converter), each checked in llama-server
    mcqa-export --adapter adapters/cpu-demo --out exports/cpu-demo-gguf --format gguf --gguf-types f16,q8_0

    # replace an earlier export, then upload it (token from HF_TOKEN or `hf auth login`)
    mcqa-export --adapter adapters/cpu-demo --out exports/m --overwrite --push-to-hub me/medmcqa-1b

docs/export.md says what the check measures.
"""

from __future__ import annotations

import sys

from ..command_line import Parser, add_fields, command
from ..shipping.merge import ExportArgs, export_merged


@command
def main(argv: list[str] | None = None) -> int:
    p = Parser(prog="mcqa-export", description=__doc__)
    add_fields(p, ExportArgs)
    args = ExportArgs(**vars(p.parse_args(argv)))
    export_merged(args)
    if args.push_to_hub:
        from ..shipping.hub_upload import push_folder

        print(f"[export] pushed to {push_folder(args.out, args.push_to_hub)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
