"""One queue in front of the app's model: the questions of every session are gathered for a few milliseconds
and scored together in one batch, and long evaluations are cut into batches that interleave with them.

One worker thread owns the model (nothing else calls it, so no lock is needed around forward passes). Each
turn it takes the oldest waiting interactive request (an Ask, a Browse answer) and every other interactive
request scored the same way (the adapter on or off, letter or cloze), up to
`batch_size` rows, and scores them in one call of that kind's scorer;
only when no interactive request waits does it take up to `batch_size` rows of the oldest evaluation. So an
Ask waits for at most the one batch already running. Jobs that are not scoring (generating an
explanation) run alone, in their turn.

Continuous batching in vLLM and llama.cpp's server does the same at the token level; for one forward pass
per question, batching at the request level is all there is to gain.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

from ..data.prompt import OPTION_KEYS, Shots, shots_of
from ..evaluation.letter_scoring import LetterScore
from ..evaluation.scorers import Progress, Scorer

GATHER_SECONDS = 0.005  # how long an idle worker waits for other sessions' questions before scoring
PROMPT_KEYS = ("question", *OPTION_KEYS)
IDLE_EXIT_SECONDS = 60.0  # an idle worker ends (and lets go of the model); the next request starts another


@dataclass(eq=False)  # compared by identity: two sessions may ask the same question
class _Request:
    rows: list[dict]
    adapter: bool
    interactive: bool
    job: Callable[[], object] | None = None  # a non-scoring job (generation), run alone
    kind: str = "letter"  # which scorer
    shots: Shots = ""  # the K-shot examples before every question, or one text per question
    future: Future = field(default_factory=Future, init=False)
    results: list[LetterScore | None] = field(init=False)
    order: list[int] = field(init=False)  # the order rows are handed out in
    taken: int = field(default=0, init=False)  # rows handed to a batch so far
    done: int = field(default=0, init=False)  # rows scored so far

    def __post_init__(self):
        self.results = [None] * len(self.rows)
        # An evaluation goes longest first, so each batch holds rows of similar length and little padding
        # (as score_rows sorts a whole call); characters stand in for tokens.
        self.order = list(range(len(self.rows)))
        if not self.interactive:
            self.order.sort(key=lambda i: -sum(len(str(self.rows[i].get(k) or "")) for k in PROMPT_KEYS))


class AnswerQueue:
    """Scores rows for many threads (Streamlit sessions) through one worker; a `Scorer` of its first scorer's kind
    itself, and of any other kind it was given through `of_kind`."""

    def __init__(self, *scorers: Scorer, batch_size: int = 16, gather_seconds: float = GATHER_SECONDS):
        self.scorers = {getattr(s, "kind", "letter"): s for s in scorers}  # one worker, one model: every kind
        self.scorer, self.kind = scorers[0], getattr(scorers[0], "kind", "letter")
        self.batch_size, self.gather_seconds = batch_size, gather_seconds
        self._waiting: deque[_Request] = deque()
        self._cond = threading.Condition()
        self.batches = 0  # batches scored (tests and the benchmark read it)
        self._worker: threading.Thread | None = None

    # ------------------------------------------------------------------ the Scorer interface

    @property
    def has_base(self) -> bool:
        return self.scorer.has_base

    def describe(self) -> dict:
        return {**self.scorer.describe(), "batch_size": self.batch_size}

    def of_kind(self, kind: str) -> Scorer:
        """This queue as a scorer of `kind` ("letter" or "cloze"): its requests take turns with every other's."""
        return self if kind == self.kind else _QueueOfKind(self, kind)

    def score(
        self,
        rows: list[dict],
        *,
        adapter: bool = True,
        progress: Progress | None = None,
        interactive: bool | None = None,
        shots: Shots = "",
        kind: str | None = None,
    ) -> list[LetterScore]:
        """Score rows in order. A request of more than one batch counts as an evaluation (it yields to
        interactive questions between batches) unless `interactive` says otherwise. `progress(done, total)`
        is called in the caller's thread (Streamlit widgets can only be updated from there)."""
        if not rows:
            return []
        if interactive is None:
            interactive = len(rows) <= self.batch_size
        request = self._put(_Request(list(rows), adapter, interactive, kind=kind or self.kind, shots=shots))
        reported = -1
        while True:
            try:
                results = request.future.result(timeout=0.2)
                break
            except TimeoutError:
                if progress and request.done != reported:
                    reported = request.done
                    progress(reported, len(rows))
        if progress:
            progress(len(rows), len(rows))
        return results

    def run(self, job: Callable[[], object]) -> object:
        """Run `job()` on the worker, alone with the model, in its turn among interactive requests."""
        return self._put(_Request([], True, True, job=job)).future.result()

    # ------------------------------------------------------------------ the worker

    def _put(self, request: _Request) -> _Request:
        with self._cond:
            self._waiting.append(request)
            self._cond.notify()
            if self._worker is None:
                self._worker = threading.Thread(target=self._run, name="answer-queue", daemon=True)
                self._worker.start()
        return request

    def _next_batch(self) -> tuple[list[tuple[_Request, int]], _Request | None]:
        """(request, row index) pairs to score together, or a job to run alone; called holding the lock."""
        interactive = [r for r in self._waiting if r.interactive]
        if interactive and interactive[0].job is not None:
            self._waiting.remove(interactive[0])
            return [], interactive[0]
        pool = [r for r in interactive if r.job is None] or [r for r in self._waiting if r.job is None]
        picked: list[tuple[_Request, int]] = []
        how = (pool[0].adapter, pool[0].kind)
        for r in pool:
            if (r.adapter, r.kind) != how:
                continue
            while r.taken < len(r.rows) and len(picked) < self.batch_size:
                picked.append((r, r.order[r.taken]))
                r.taken += 1
            if r.taken == len(r.rows):
                self._waiting.remove(r)
            if len(picked) == self.batch_size:
                break
        return picked, None

    def _run(self) -> None:
        idle = True  # a new worker was started by a request that just arrived
        while True:
            with self._cond:
                if not self._waiting:
                    idle = True
                    self._cond.wait(IDLE_EXIT_SECONDS)
                if not self._waiting:
                    self._worker = None
                    return
            if idle and self.gather_seconds:
                time.sleep(self.gather_seconds)  # let the other sessions' questions of this moment arrive
            idle = False
            with self._cond:
                picked, job = self._next_batch()
            if job is not None:
                self._finish_job(job)
            elif picked:
                self._score(picked)

    @staticmethod
    def _finish_job(request: _Request) -> None:
        try:
            request.future.set_result(request.job())
        except BaseException as e:  # the caller sees the job's own error
            request.future.set_exception(e)

    def _score(self, picked: list[tuple[_Request, int]]) -> None:
        try:
            first = picked[0][0]
            shots = [shots_of(r.shots, i) for r, i in picked]  # each question keeps its own examples
            scores = self.scorers[first.kind].score([r.rows[i] for r, i in picked], adapter=first.adapter, shots=shots)
        except BaseException as e:
            requests = list({id(r): r for r, _ in picked}.values())
            if len(requests) == 1:
                self._fail(requests[0], e)
            else:  # one session's bad question must not fail the others': score each request's rows alone
                for r in requests:
                    self._score([(q, i) for q, i in picked if q is r])
            return
        self.batches += 1
        for (r, i), s in zip(picked, scores):
            r.results[i] = s
            r.done += 1
            if r.done == len(r.rows) and not r.future.done():
                r.future.set_result(r.results)

    def _fail(self, request: _Request, error: BaseException) -> None:
        with self._cond:
            if request in self._waiting:
                self._waiting.remove(request)  # the rest of a failed evaluation is not scored
        if not request.future.done():
            request.future.set_exception(error)


class _QueueOfKind:
    """The queue as a scorer of another kind than its first (cloze beside letter): the same worker and turns."""

    def __init__(self, queue: AnswerQueue, kind: str):
        self.queue, self.kind = queue, kind

    @property
    def has_base(self) -> bool:
        return self.queue.scorers[self.kind].has_base

    def describe(self) -> dict:
        return {**self.queue.scorers[self.kind].describe(), "batch_size": self.queue.batch_size}

    def score(self, rows, *, adapter=True, progress=None, shots=""):
        return self.queue.score(rows, adapter=adapter, progress=progress, shots=shots, kind=self.kind)
