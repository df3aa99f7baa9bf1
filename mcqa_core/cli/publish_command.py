"""Upload an adapter or merged-model folder to the Hugging Face hub (`mcqa-publish`).

    # after training or export; the token comes from HF_TOKEN or `hf auth login`, never a flag
    HF_TOKEN=... mcqa-publish adapters/cpu-demo my-name/medmcqa-lora

Repos are created private unless --public.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from ..command_line import Parser, add_fields, command
from ..errors import McqaError, SettingsError, refuse
from ..setting_fields import setting


@dataclass
class PublishArgs:
    folder: str = setting(
        help="A trained folder of any --peft-method (train_adapter.py; each holds adapter_config.json) or a merged "
        "folder (mcqa-export; config.json).",
        positional=True,
    )
    repo: str = setting(
        help="Hub repo id, owner/name. The token comes from HF_TOKEN or `hf auth login`.", positional=True
    )
    public: bool = setting(False, "Create the repo public (default: private).")


@command
def main(argv: list[str] | None = None) -> int:
    from ..shipping.hub_upload import check_push_ready, push_folder

    p = Parser(prog="mcqa-publish", description=__doc__)
    add_fields(p, PublishArgs)
    args = PublishArgs(**vars(p.parse_args(argv)))
    folder = Path(args.folder)
    problems = check_push_ready(args.repo, flag="REPO")  # malformed id, no token: exit 2, nothing was tried
    if not (folder / "config.json").exists() and not (folder / "adapter_config.json").exists():
        problems.insert(
            0,
            f"{folder} holds neither adapter_config.json nor config.json; train with "
            "`python train_adapter.py` or export with `mcqa-export` first",
        )
    elif (folder / "adapter_config.json").exists():
        from ..models.inference import read_adapter_info

        try:  # as mcqa-eval checks it (config, weights, record), so a damaged folder never reaches the hub
            read_adapter_info(folder, check_base=False)
        except McqaError as e:
            problems.insert(0, str(e))
    refuse(SettingsError, "publish", problems)
    print(f"pushed {folder} to {push_folder(folder, args.repo, private=not args.public)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
