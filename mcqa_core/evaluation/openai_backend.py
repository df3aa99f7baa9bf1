"""Scoring through an OpenAI-compatible server (vLLM, llama.cpp's `llama-server`): the same prompt, one
token generated, and the letters' probabilities read from the server's log-probabilities of that token.

The server tokenizes the prompt itself, so the prompt text must be exactly ours (`format_prompt`); a
question longer than `max_prompt_tokens` is shortened here first when a tokenizer is given, as in-process.
A server lists only its top log-probabilities, and a weak model (or one under a chat template) may leave a
letter out of them. Such a question is asked again with the same `logit_bias` on every letter token: the
bias puts the letters first and leaves their ratios unchanged, so every letter gets its probability. Only
log-probabilities taken after the bias show it: llama.cpp's `post_sampling_probs`, vLLM's
`--logprobs-mode processed_logprobs`; a server that ignores it is refused in one line.
vLLM answers `logprobs.top_logprobs` (a token -> logprob map), llama.cpp `logprobs.content[0].top_logprobs`
(a list), or `top_probs` with probabilities after sampling.
"""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from ..data.features import encode_prompt
from ..data.prompt import LETTERS, Shots, answer_letter, format_prompt, letter_prefix, option_count, shots_of
from ..errors import McqaError
from .letter_scoring import DEFAULT_MAX_PROMPT_TOKENS, LetterScore, letter_token_ids
from .scorers import Progress

TOP_LOGPROBS = 20  # vLLM's default cap (--max-logprobs); letters of a model that answers sit far above it
LETTER_BIAS = 100.0  # the largest logit_bias OpenAI's API and vLLM accept; far above any logit gap between tokens
# Sampling that keeps the whole distribution, so probabilities taken after the sampling chain are the biased
# softmax itself (llama.cpp truncates with top_k/top_p/min_p by default; temperature 0 keeps one token).
_UNTRUNCATED = {"temperature": 1.0, "top_k": -1, "top_p": 1.0, "min_p": 0.0, "post_sampling_probs": True}
DEFAULT_TIMEOUT = 60.0


class BackendError(McqaError):
    """The server cannot be used as asked (down, slow, no log-probabilities, unknown model)."""


class OpenAIScorer:
    """Letter scores from `endpoint` (e.g. http://localhost:8000/v1) for the model the server calls `model`;
    `base_model` names the base model on the same server (for the adapter-off comparison), if it has one."""

    kind = "letter"

    def __init__(
        self,
        endpoint: str,
        model: str,
        *,
        base_model: str | None = None,
        tokenizer=None,
        max_prompt_tokens: int = DEFAULT_MAX_PROMPT_TOKENS,
        style: str = "course",
        timeout: float = DEFAULT_TIMEOUT,
        concurrency: int = 8,
    ):
        self.endpoint = endpoint.rstrip("/")
        if not self.endpoint.endswith("/v1"):
            self.endpoint += "/v1"
        self.model, self.base_model, self.tokenizer = model, base_model, tokenizer
        self.max_prompt_tokens, self.style, self.timeout, self.concurrency = (
            max_prompt_tokens,
            style,
            timeout,
            concurrency,
        )
        self._letter_ids: dict[tuple[str, int], list[int]] = {}  # (served model, options) -> letter token ids

    @property
    def has_base(self) -> bool:
        return self.base_model is not None

    def describe(self) -> dict:
        return {
            "backend": "openai",
            "endpoint": self.endpoint,
            "served_model": self.model,
            "base_model": self.base_model,
            "adapter": self.model,
            "prompt_style": self.style,
            "max_prompt_tokens": self.max_prompt_tokens,
        }

    # ------------------------------------------------------------------ HTTP

    def _request(self, path: str, body: dict | None = None, *, beside_v1: bool = False) -> dict:
        url = (self.endpoint[: -len("/v1")] if beside_v1 else self.endpoint) + path
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as e:
            detail = e.read().decode(errors="replace")
            try:
                json.loads(detail)
                detail = " ".join(detail.split())[:300]
            except ValueError:  # a web page (a plain web server's 404): named, never pasted into the line
                if path == "/models":  # the first request: no OpenAI-compatible server answers it so
                    raise BackendError(self._not_openai(url, f"HTTP {e.code} with a page that is not JSON")) from None
                detail = "a page that is not JSON"
            raise BackendError(
                f"the server at {self.endpoint} refused {path} (HTTP {e.code}: {detail}); check "
                "--model against the names it serves (GET /v1/models)"
            ) from None
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as e:
            reason = getattr(e, "reason", None) or e
            if isinstance(reason, TimeoutError):
                raise BackendError(
                    f"the server at {self.endpoint} did not answer {path} within {self.timeout:g} s; "
                    "it may be overloaded or still loading: raise the timeout or check it"
                ) from None
            raise BackendError(
                f"cannot reach the server at {self.endpoint} ({reason}, timeout {self.timeout:g} s); "
                "start it (docs/serving.md) or fix the endpoint address"
            ) from None
        except ValueError:
            raise BackendError(self._not_openai(url, "a page that is not JSON")) from None

    def _not_openai(self, url: str, answer: str) -> str:
        path = url.removeprefix(self.endpoint.removesuffix("/v1"))  # /v1/models
        return (
            f"the server at {self.endpoint} is not an OpenAI-compatible server: {path} answered {answer}; "
            "point --endpoint at a vLLM or llama-server address ending in /v1 (docs/serving.md)"
        )

    def served_models(self) -> list[str]:
        answer = self._request("/models")
        listed = answer.get("data") if isinstance(answer, dict) else None
        if not isinstance(listed, list):
            raise BackendError(self._not_openai("/v1/models", "JSON that lists no models (no 'data' list)"))
        return [m.get("id") for m in listed if isinstance(m, dict)]

    def check(self) -> None:
        """Refuse, in one line and before any scoring, a server that is down or does not serve our models."""
        served = self.served_models()
        for name in filter(None, (self.model, self.base_model)):
            if name not in served:
                raise BackendError(
                    f"the server at {self.endpoint} does not serve {name!r} (it serves: "
                    f"{', '.join(map(str, served)) or 'nothing'}); pass one of those as --model"
                )

    # ------------------------------------------------------------------ scoring

    def _prompt(self, row: dict, shots: str = "") -> tuple[str, bool]:
        if self.tokenizer is None:
            return format_prompt(row, self.style, shots=shots), False
        enc = encode_prompt(self.tokenizer, row, self.max_prompt_tokens, self.style, shots=shots)
        if enc is None:
            raise BackendError(
                f"row {row.get('id', '?')}: its options alone exceed {self.max_prompt_tokens} "
                "prompt tokens; shorten them"
            )
        return enc.text, enc.shortened

    def _top(self, model: str, text: str, bias: dict[str, float] | None = None) -> dict[str, float]:
        body = {"model": model, "prompt": text, "max_tokens": 1, "temperature": 0.0, "logprobs": TOP_LOGPROBS}
        if bias:
            body.update(_UNTRUNCATED, logit_bias=bias)
        choice = (self._request("/completions", body).get("choices") or [{}])[0]
        top = _top_logprobs(choice.get("logprobs"))
        if top is None:
            raise BackendError(
                f"the server at {self.endpoint} returned no log-probabilities for {model!r}; letter "
                "scoring needs them (vLLM: --max-logprobs 20 or more; llama.cpp: a recent llama-server)"
            )
        return top

    def letter_ids(self, model: str, n: int) -> list[int]:
        """The first token of each letter: from our tokenizer when there is one (the server's own for an
        export), else from the server's /tokenize (vLLM and llama.cpp both have it, beside /v1)."""
        key = (model, n)
        if key not in self._letter_ids:
            self._letter_ids[key] = (
                letter_token_ids(self.tokenizer, self.style, n)
                if self.tokenizer
                else [self._server_token(model, letter_prefix(L, self.style)) for L in LETTERS[:n]]
            )
        return self._letter_ids[key]

    def _server_token(self, model: str, text: str) -> int:
        body = {"model": model, "prompt": text, "content": text, "add_special_tokens": False}
        try:
            tokens = self._request("/tokenize", body, beside_v1=True).get("tokens")
            why = f"/tokenize answered {tokens!r}"
        except BackendError as e:
            tokens, why = None, str(e)
        if not tokens or not isinstance(tokens[0], int):
            raise BackendError(
                f"{model!r} left letters out of its top {TOP_LOGPROBS} next tokens and the server "
                f"could not tokenize them ({why}); pass the base model (--base-model) so its "
                "tokenizer names them"
            )
        return tokens[0]

    def _score_one(self, row: dict, index: int, model: str, shots: str = "") -> LetterScore:
        text, shortened = self._prompt(row, shots)
        n = option_count(row)
        letters = [letter_prefix(L, self.style) for L in LETTERS[:n]]
        top = self._top(model, text)
        raw = [top.get(t) for t in letters]
        if None not in raw:  # the common case: one request, the model's own probabilities
            logp, mass = raw, sum(math.exp(v) for v in raw)
        else:
            biased = self._top(model, text, {str(i): LETTER_BIAS for i in self.letter_ids(model, n)})
            logp = [biased.get(t) for t in letters]
            if None in logp:
                raise BackendError(
                    f"the server at {self.endpoint} ignores logit_bias in its log-probabilities, so "
                    f"{model!r}'s letters outside its top {TOP_LOGPROBS} get none (row "
                    f"{row.get('id', index)}); vLLM: start it with --logprobs-mode processed_logprobs"
                )
            # The raw share of the letters: from the letters the first answer listed, scaled by their biased
            # share; with none listed, each letter is below the last listed token.
            listed = [i for i, v in enumerate(raw) if v is not None]
            rel = _softmax(logp)
            mass = (
                sum(math.exp(raw[i]) for i in listed) / sum(rel[i] for i in listed)
                if listed
                else n * math.exp(min(top.values()))
            )
        return LetterScore(
            id=str(row.get("id", index)),
            probs=_softmax(logp),
            letter_mass=min(mass, 1.0),
            gold=answer_letter(row) if row.get("cop") is not None else None,
            shortened=shortened,
        )

    def score(
        self, rows: list[dict], *, adapter: bool = True, progress: Progress | None = None, shots: Shots = ""
    ) -> list[LetterScore]:
        """Rows in order; `concurrency` requests in flight (the server batches them)."""
        model = self.model if adapter else self.base_model
        if model is None:
            raise BackendError("the server backend has no base model to compare with; name it with --base-served-model")
        out: list[LetterScore] = []
        with ThreadPoolExecutor(self.concurrency) as pool:
            for score in pool.map(
                lambda pair: self._score_one(pair[1], pair[0], model, shots_of(shots, pair[0])), enumerate(rows)
            ):
                out.append(score)
                if progress and (len(out) % 16 == 0 or len(out) == len(rows)):
                    progress(len(out), len(rows))
        return out

    def generate(self, prompt: str, max_new_tokens: int, adapter: bool = True, stop: list[str] | None = None) -> str:
        body = {
            "model": self.model if adapter else self.base_model,
            "prompt": prompt,
            "max_tokens": max_new_tokens,
            "temperature": 0.0,
            **({"stop": stop} if stop else {}),
        }
        return ((self._request("/completions", body).get("choices") or [{}])[0].get("text") or "").strip()


def connect(endpoint: str, model: str, *, tokenizer_of: str | None = None, **options) -> OpenAIScorer:
    """A scorer for the server, checked (reachable, serves the names given) before any scoring. The tokenizer
    of `tokenizer_of` (a model name), when given, shortens long questions as in-process scoring does; without
    it prompts go whole."""
    from ..models.loading import load_tokenizer, resolve_model

    tokenizer = load_tokenizer(resolve_model(tokenizer_of)) if tokenizer_of else None
    scorer = OpenAIScorer(endpoint, model, tokenizer=tokenizer, **options)
    scorer.check()
    return scorer


def _softmax(logp: list[float]) -> list[float]:
    best = max(logp)
    weights = [math.exp(v - best) for v in logp]
    total = sum(weights)
    return [w / total for w in weights]


def _top_logprobs(logprobs) -> dict[str, float] | None:
    """{token text: logprob} for the first generated token, from either server's answer."""
    if not logprobs:
        return None
    if isinstance(logprobs.get("top_logprobs"), list) and logprobs["top_logprobs"]:  # OpenAI legacy / vLLM
        return dict(logprobs["top_logprobs"][0] or {})
    content = logprobs.get("content")
    if isinstance(content, list) and content:  # llama.cpp: logprobs, or probabilities after sampling
        first = content[0]
        if "top_probs" in first:
            return {t["token"]: math.log(t["prob"]) for t in first["top_probs"] or [] if t.get("prob", 0) > 0}
        return {t["token"]: t["logprob"] for t in first.get("top_logprobs") or []}
    return None
