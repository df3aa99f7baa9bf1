"""Scoring through an OpenAI-compatible server (vLLM, llama.cpp's `llama-server`): the same prompt, one
token generated, and the letters' probabilities read from the server's log-probabilities of that token.

The server tokenizes the prompt itself, so the prompt text must be exactly ours (`format_prompt`); a
question longer than `max_prompt_tokens` is shortened here first when a tokenizer is given, as in-process.
Letters missing from the server's top log-probabilities get probability 0; a question whose top tokens hold
none of its letters is refused (the model named is not answering with letters). vLLM answers
`logprobs.top_logprobs` (a token -> logprob map), llama.cpp `logprobs.content[0].top_logprobs` (a list).
"""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from ..data.features import encode_prompt
from ..data.prompt import LETTERS, answer_letter, format_prompt, letter_prefix, option_count
from ..errors import McqaError
from .scorers import Progress
from .scoring import DEFAULT_MAX_PROMPT_TOKENS, LetterScore

TOP_LOGPROBS = 20  # vLLM's default cap (--max-logprobs); letters of a model that answers sit far above it
DEFAULT_TIMEOUT = 60.0


class BackendError(McqaError):
    """The server cannot be used as asked (down, slow, no log-probabilities, unknown model)."""


class OpenAIScorer:
    """Letter scores from `endpoint` (e.g. http://localhost:8000/v1) for the model the server calls `model`;
    `base_model` names the base model on the same server (for the adapter-off comparison), if it has one."""

    def __init__(self, endpoint: str, model: str, *, base_model: str | None = None, tokenizer=None,
                 max_prompt_tokens: int = DEFAULT_MAX_PROMPT_TOKENS, style: str = "course",
                 timeout: float = DEFAULT_TIMEOUT, concurrency: int = 8):
        self.endpoint = endpoint.rstrip("/")
        if not self.endpoint.endswith("/v1"):
            self.endpoint += "/v1"
        self.model, self.base_model, self.tokenizer = model, base_model, tokenizer
        self.max_prompt_tokens, self.style, self.timeout, self.concurrency = max_prompt_tokens, style, timeout, concurrency

    @property
    def has_base(self) -> bool:
        return self.base_model is not None

    def describe(self) -> dict:
        return {"backend": "openai", "endpoint": self.endpoint, "served_model": self.model,
                "base_model": self.base_model, "adapter": self.model, "prompt_style": self.style,
                "max_prompt_tokens": self.max_prompt_tokens}

    # ------------------------------------------------------------------ HTTP

    def _request(self, path: str, body: dict | None = None) -> dict:
        url = self.endpoint + path
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as e:
            detail = e.read().decode(errors="replace")[:300]
            raise BackendError(f"the server at {self.endpoint} refused {path} (HTTP {e.code}: {detail}); check "
                               "--model against the names it serves (GET /v1/models)") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as e:
            reason = getattr(e, "reason", None) or e
            if isinstance(reason, TimeoutError):
                raise BackendError(f"the server at {self.endpoint} did not answer {path} within {self.timeout:g} s; "
                                   "it may be overloaded or still loading: raise the timeout or check it") from None
            raise BackendError(f"cannot reach the server at {self.endpoint} ({reason}, timeout {self.timeout:g} s); "
                               "start it (docs/serving.md) or fix the endpoint address") from None
        except ValueError:
            raise BackendError(f"the server at {self.endpoint} did not answer {path} with JSON; is --endpoint an "
                               "OpenAI-compatible server?") from None

    def served_models(self) -> list[str]:
        return [m.get("id") for m in self._request("/models").get("data", [])]

    def check(self) -> None:
        """Refuse, in one line and before any scoring, a server that is down or does not serve our models."""
        served = self.served_models()
        for name in filter(None, (self.model, self.base_model)):
            if name not in served:
                raise BackendError(f"the server at {self.endpoint} does not serve {name!r} (it serves: "
                                   f"{', '.join(map(str, served)) or 'nothing'}); pass one of those as --model")

    # ------------------------------------------------------------------ scoring

    def _prompt(self, row: dict) -> tuple[str, bool]:
        if self.tokenizer is None:
            return format_prompt(row, self.style), False
        enc = encode_prompt(self.tokenizer, row, self.max_prompt_tokens, self.style)
        if enc is None:
            raise BackendError(f"row {row.get('id', '?')}: its options alone exceed {self.max_prompt_tokens} "
                               "prompt tokens; shorten them")
        return enc.text, enc.shortened

    def _score_one(self, row: dict, index: int, model: str) -> LetterScore:
        text, shortened = self._prompt(row)
        body = {"model": model, "prompt": text, "max_tokens": 1, "temperature": 0.0, "logprobs": TOP_LOGPROBS}
        choice = (self._request("/completions", body).get("choices") or [{}])[0]
        top = _top_logprobs(choice.get("logprobs"))
        if top is None:
            raise BackendError(f"the server at {self.endpoint} returned no log-probabilities for {model!r}; letter "
                               "scoring needs them (vLLM: --max-logprobs 20 or more; llama.cpp: a recent llama-server)")
        n = option_count(row)
        logp = [top.get(letter_prefix(L, self.style), -math.inf) for L in LETTERS[:n]]
        if all(v == -math.inf for v in logp):
            raise BackendError(f"{model!r} put none of the letters {LETTERS[0]}-{LETTERS[n - 1]} among its top "
                               f"{TOP_LOGPROBS} next tokens for row {row.get('id', index)}; is it the MCQA model?")
        best = max(logp)
        weights = [math.exp(v - best) for v in logp]
        total = sum(weights)
        return LetterScore(id=str(row.get("id", index)), probs=[w / total for w in weights],
                           letter_mass=sum(math.exp(v) for v in logp),
                           gold=answer_letter(row) if row.get("cop") is not None else None, shortened=shortened)

    def score(self, rows: list[dict], *, adapter: bool = True, progress: Progress | None = None) -> list[LetterScore]:
        """Rows in order; `concurrency` requests in flight (the server batches them)."""
        model = self.model if adapter else self.base_model
        if model is None:
            raise BackendError("the server backend has no base model to compare with; name it with --base-served-model")
        out: list[LetterScore] = []
        with ThreadPoolExecutor(self.concurrency) as pool:
            for score in pool.map(lambda pair: self._score_one(pair[1], pair[0], model), enumerate(rows)):
                out.append(score)
                if progress and (len(out) % 16 == 0 or len(out) == len(rows)):
                    progress(len(out), len(rows))
        return out

    def generate(self, prompt: str, max_new_tokens: int, adapter: bool = True) -> str:
        body = {"model": self.model if adapter else self.base_model, "prompt": prompt, "max_tokens": max_new_tokens,
                "temperature": 0.0}
        return ((self._request("/completions", body).get("choices") or [{}])[0].get("text") or "").strip()


def _top_logprobs(logprobs) -> dict[str, float] | None:
    """{token text: logprob} for the first generated token, from either server's answer."""
    if not logprobs:
        return None
    if isinstance(logprobs.get("top_logprobs"), list) and logprobs["top_logprobs"]:  # OpenAI legacy / vLLM
        return dict(logprobs["top_logprobs"][0] or {})
    content = logprobs.get("content")
    if isinstance(content, list) and content:  # llama.cpp
        return {t["token"]: t["logprob"] for t in content[0].get("top_logprobs") or []}
    return None
