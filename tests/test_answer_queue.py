"""The app's answer queue: questions from many threads (sessions) are scored together, each thread gets its own
answers (the same as scoring alone), an Ask is served between an evaluation's batches, and one session's bad
question does not fail another's. Tiny random Llama with a random LoRA, so adapter on and off differ."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from mcqa_core.evaluation.cpu_precision import bf16_pays
from mcqa_core.evaluation.letter_scoring import score_rows
from mcqa_core.evaluation.scorers import LetterScorer
from mcqa_core.service.answer_queue import AnswerQueue

from .test_evaluate import answer_changing_adapter  # noqa: F401  (a fixture)
from .test_evaluate import loaded_adapter as loaded_adapter  # a fixture the tests take by name


def _alone(loaded, rows, adapter):
    bf16 = loaded.bf16_scoring and bf16_pays(loaded.model)  # as the queue's scorer asks
    if adapter:
        return score_rows(loaded.model, loaded.tokenizer, rows, batch_size=1, bf16=bf16)
    with loaded.model.disable_adapter():
        return score_rows(loaded.model, loaded.tokenizer, rows, batch_size=1, bf16=bf16)


def _in_threads(fns):
    out = [None] * len(fns)
    threads = [threading.Thread(target=lambda i=i, f=f: out.__setitem__(i, f())) for i, f in enumerate(fns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return out


def test_sessions_asking_at_once_get_their_own_answers_in_shared_batches(loaded_adapter, validation_rows):
    queue = AnswerQueue(LetterScorer(loaded_adapter), batch_size=16, gather_seconds=0.3)
    asks = [([row], i % 3 != 0) for i, row in enumerate(validation_rows[:9])]  # every third with the adapter off
    asks.append((validation_rows[20:24], True))  # one session asks four at once
    got = _in_threads([lambda rows=rows, on=on: queue.score(rows, adapter=on) for rows, on in asks])
    assert queue.batches == 2  # one batch with the adapter on, one with it off: not ten
    changed = 0
    for (rows, on), scores in zip(asks, got):
        alone = _alone(loaded_adapter, rows, on)
        assert [s.id for s in scores] == [r["id"] for r in rows]
        assert [s.pred for s in scores] == [s.pred for s in alone]
        # Batch shape changes the CPU kernels' summation order (1.5e-5 seen on a Xeon with AMX); another
        # session's answers would differ by far more.
        assert torch.allclose(
            torch.tensor([s.probs for s in scores]), torch.tensor([s.probs for s in alone]), atol=1e-4
        )
        changed += sum(a.pred != b.pred for a, b in zip(scores, _alone(loaded_adapter, rows, not on)))
    assert changed, "adapter on and off should answer some of these differently, or the test proves little"


class _SlowScorer:
    """Records each batch it scores; every batch takes `seconds`."""

    has_base = True

    def __init__(self, seconds):
        self.seconds, self.log = seconds, []

    def score(self, rows, *, adapter=True, progress=None, shots=""):
        time.sleep(self.seconds)
        self.log.append([r["id"] for r in rows])
        return [type("S", (), {"id": r["id"]})() for r in rows]

    def describe(self):
        return {}


def test_an_ask_waits_for_at_most_one_batch_of_a_running_evaluation():
    scorer = _SlowScorer(0.05)
    queue = AnswerQueue(scorer, batch_size=4, gather_seconds=0)
    evaluation = [{"id": f"e{i}"} for i in range(80)]  # 20 batches, about a second
    progress = []
    done = threading.Thread(target=lambda: queue.score(evaluation, progress=lambda d, t: progress.append(d)))
    done.start()
    time.sleep(0.3)
    started = time.perf_counter()
    (answer,) = queue.score([{"id": "ask"}])
    waited = time.perf_counter() - started
    done.join(10)
    where = next(i for i, ids in enumerate(scorer.log) if ids == ["ask"])
    assert 0 < where < len(scorer.log) - 1  # in between the evaluation's batches, not after them
    assert answer.id == "ask" and waited < 3 * scorer.seconds + 0.1  # the batch running, then its own
    assert sum(len(ids) for ids in scorer.log) == 81 and progress[-1] == 80


def test_one_sessions_bad_question_fails_only_that_session(loaded_adapter, validation_rows):
    queue = AnswerQueue(LetterScorer(loaded_adapter, max_prompt_tokens=400), batch_size=16, gather_seconds=0.3)
    too_long = dict(validation_rows[0], opa="word " * 600)  # the options alone exceed 400 tokens
    errors = []

    def ask(row):
        try:
            return queue.score([row])
        except ValueError as e:
            errors.append(str(e))

    good, bad = _in_threads([lambda: ask(validation_rows[1]), lambda: ask(too_long)])
    assert good[0].id == validation_rows[1]["id"] and bad is None
    assert len(errors) == 1 and "cannot fit in 400 prompt tokens" in errors[0]


def test_jobs_run_on_the_worker_alone_and_their_errors_reach_the_caller():
    queue = AnswerQueue(_SlowScorer(0), batch_size=4)
    assert queue.run(lambda: threading.current_thread().name) == "answer-queue"
    with pytest.raises(ZeroDivisionError):
        queue.run(lambda: 1 / 0)
    assert queue.score([{"id": "after"}])[0].id == "after"  # the worker survived the error
