"""Upload a finished folder (adapter or merged model) to the Hugging Face hub.

    # after training or export; the token comes from HF_TOKEN or `hf auth login`, never a flag
    HF_TOKEN=... mcqa-publish adapters/cpu-demo my-name/medmcqa-lora

The token is read by huggingface_hub itself (`get_token()`: the HF_TOKEN variable, then the stored
login) and handed straight to the upload call: it is never a command-line argument (argv shows in
`ps` and shell history), never printed, never written into mcqa_run.json, the card or any log.
When the hub cannot be reached the local folder is left exactly as it was and the error says how
to push it later.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import PublishError
from ..hub import hub_reachable

# Never uploaded: trainer checkpoints (optimizer state, large) and temporary files.
IGNORE_PATTERNS = ["checkpoints/*", "checkpoints/**", ".*"]
REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def check_repo_id(repo_id: str, flag: str = "--push-to-hub") -> str | None:
    """The problem with a repo id, or None."""
    if not REPO_ID.match(repo_id or "") or ".." in repo_id:
        return f"{flag} {repo_id!r} is not a hub repo id; give it as owner/name (e.g. my-name/medmcqa-lora)"
    return None


def hub_token() -> str | None:
    """The token huggingface_hub would use (HF_TOKEN, then the stored login); None when there is none."""
    from huggingface_hub import get_token

    return get_token()


def check_push_ready(repo_id: str, flag: str = "--push-to-hub") -> list[str]:
    """Problems to report before a long run starts: a malformed repo id, no token anywhere."""
    problems = []
    bad = check_repo_id(repo_id, flag)
    if bad:
        problems.append(bad)
    if not hub_token():
        problems.append(
            f"{flag} needs a Hugging Face token: export HF_TOKEN=... or run `hf auth login` "
            "(a token is never accepted as a flag)"
        )
    return problems


def push_hint(folder: Path, repo_id: str) -> str:
    return f"the local folder {folder} is intact; push it later with `mcqa-publish {folder} {repo_id}`"


def push_folder(folder: str | Path, repo_id: str, *, private: bool = True, message: str | None = None) -> str:
    """Create (if needed) the repo and upload the folder; returns the repo URL. Raises PublishError."""
    folder = Path(folder)
    problems = check_push_ready(repo_id)
    if problems:
        raise PublishError("; ".join(problems) + f"; {push_hint(folder, repo_id)}")
    if not hub_reachable():
        raise PublishError(
            f"cannot push to {repo_id}: the Hugging Face hub cannot be reached from this machine; "
            + push_hint(folder, repo_id)
        )
    from huggingface_hub import HfApi

    api = HfApi(token=hub_token())
    try:
        url = api.create_repo(repo_id, private=private, exist_ok=True)
        api.upload_folder(
            folder_path=str(folder),
            repo_id=repo_id,
            ignore_patterns=IGNORE_PATTERNS,
            commit_message=message or f"Upload {folder.name}",
        )
    except Exception as e:  # network, auth and permission errors come as many types
        # The exception text is the library's own; it does not carry the token.
        raise PublishError(
            f"pushing {folder} to {repo_id} failed ({type(e).__name__}: {str(e)[:300]}); " + push_hint(folder, repo_id)
        ) from None
    return str(url)
