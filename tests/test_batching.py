"""Less padding, same learning: how rows become micro-batches, and that the loss does not notice.

Speed itself is measured by `bench/training.py`, not here.
"""

from __future__ import annotations

import random

import pytest
import torch

from mcqa_core.data.features import IGNORE_INDEX, encode_rows
from mcqa_core.training.batching import plan_batches, split_window, step_window_sampler
from mcqa_core.training.run import plan_for, sft_config
from mcqa_core.training.settings import load_config
from mcqa_core.training.trainer import MCQATrainer, to_dataset


@pytest.fixture(scope="module")
def real_lengths(tokenizer, validation_rows):
    enc = encode_rows(tokenizer, validation_rows[:600], 512)
    return [len(e["input_ids"]) for e in enc.examples]


def padded_tokens(lengths: list[int]) -> int:
    """Tokens computed for one right-padded micro-batch."""
    return max(lengths) * len(lengths) if lengths else 0


def _padding_share(lengths, batches):
    real = sum(lengths[i] for b in batches for i in b)
    return 1 - real / sum(padded_tokens([lengths[i] for i in b]) for b in batches)


def test_each_step_gets_the_rows_of_a_random_permutation_window(real_lengths):
    n, bs, accum = len(real_lengths), 8, 4
    sampler = step_window_sampler(real_lengths, bs, accum, seed=3)
    batches = list(sampler)
    assert len(batches) == len(sampler) == -(-n // bs)  # as many micro-batches as a plain loop
    windows = sampler.windows()
    assert sorted(i for w in windows for i in w) == list(range(n))  # a permutation: every row once
    for k, window in enumerate(windows):
        step = batches[k * accum : (k + 1) * accum]
        assert sorted(i for b in step for i in b) == sorted(window)
        assert all(b for b in step)
        # no micro-batch costs more than a plain loop's worst one from the same window
        assert max(padded_tokens([real_lengths[i] for i in b]) for b in step) <= bs * max(
            real_lengths[i] for i in window
        )
    sampler.set_epoch(1)
    assert sampler.windows() != windows  # a new order every epoch
    assert step_window_sampler(real_lengths, bs, accum, seed=3).windows() == windows  # the seed decides it


def test_splitting_within_steps_cuts_padding_on_real_rows(real_lengths):
    bs, accum = 8, 4
    perm = torch.randperm(len(real_lengths), generator=torch.Generator().manual_seed(0)).tolist()
    plain = [perm[i : i + bs] for i in range(0, len(perm), bs)]
    ours = list(step_window_sampler(real_lengths, bs, accum, seed=0))
    assert _padding_share(real_lengths, plain) > 0.2
    assert _padding_share(real_lengths, ours) < 0.5 * _padding_share(real_lengths, plain)


@pytest.mark.parametrize("n_rows,groups", [(32, 4), (7, 4), (4, 4), (300, 16)])
def test_split_window_keeps_every_row_and_the_group_count(n_rows, groups):
    rng = random.Random(n_rows)
    lengths = [rng.randint(40, 250) for _ in range(n_rows)]
    parts = split_window(lengths, list(range(n_rows)), groups)
    assert len(parts) == min(groups, n_rows) and all(parts)
    assert sorted(i for p in parts for i in p) == list(range(n_rows))


def test_batch_plan_says_what_is_used_when_sizes_do_not_divide():
    plan = plan_batches(32, 64, 16)  # the course recipe on a 32-row sample
    assert (plan.batch_size, plan.grad_accum, plan.steps_per_epoch) == (32, 1, 1)
    assert "only 32" in plan.describe() and "using 32 x 1" in plan.describe()
    plan = plan_batches(1026, 8, 4)
    assert (plan.batch_size, plan.grad_accum, plan.steps_per_epoch, plan.last_step_rows) == (8, 4, 33, 2)
    assert "last step of each epoch uses 2 rows" in plan.describe()
    assert plan_batches(1024, 8, 4).notes == []
    with pytest.raises(ValueError):
        plan_batches(0, 8, 4)


@pytest.fixture(scope="module")
def tiny_trainer(tmp_path_factory, data_dir, tiny_model_path, tokenizer, validation_rows):
    """Our trainer as run_training builds it (smoke preset: tiny Llama, 4-bit, LoRA), on 24 real rows."""
    from mcqa_core.models.loading import load_for_training

    out = tmp_path_factory.mktemp("throughput")
    cfg = load_config(
        [
            "--preset",
            "smoke",
            "--data-dir",
            str(data_dir),
            "--output-dir",
            str(out),
            "--per-device-train-batch-size",
            "4",
            "--gradient-accumulation-steps",
            "3",
        ]
    )
    model, tok, _ = load_for_training(cfg.model, cfg.lora)
    enc = encode_rows(tok, validation_rows[:24], cfg.model.max_seq_length)
    trainer = MCQATrainer(
        model=model,
        args=sft_config(cfg, out, plan_for(cfg, len(enc.examples))),
        train_dataset=to_dataset(enc),
        eval_dataset=to_dataset(encode_rows(tok, validation_rows[24:40], cfg.model.max_seq_length)),
        processing_class=tok,
    )
    return trainer, enc.examples


def _row_losses(model, examples):
    """Each row alone, no padding, our own cross-entropy: (summed token loss, label tokens) per row."""
    out = []
    for ex in examples:
        ids = torch.tensor([ex["input_ids"]])
        labels = torch.tensor([ex["labels"]])
        logits = model(input_ids=ids).logits.float()  # no labels: the model's own forward, full logits
        loss = torch.nn.functional.cross_entropy(
            logits[0, :-1], labels[0, 1:], ignore_index=IGNORE_INDEX, reduction="sum"
        )
        out.append((loss, int((labels[0, 1:] != IGNORE_INDEX).sum())))
    return out


def _lora_grads(model):
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad and p.grad is not None}


def test_loss_and_gradient_of_a_step_equal_the_rows_one_at_a_time(tiny_trainer):
    """The Trainer's step loss (grouped micro-batches, padded, chunked loss) is the token-weighted mean
    of the rows' losses computed alone: sum of token losses / label tokens of the whole step."""
    trainer, examples = tiny_trainer
    model = trainer.model
    model.train()
    loader = trainer.get_train_dataloader()
    accum = trainer.args.gradient_accumulation_steps
    it = iter(loader)
    step = [next(it) for _ in range(accum)]
    assert len({b["input_ids"].shape[0] for b in step}) > 1 or len({b["input_ids"].shape[1] for b in step}) > 1
    n_items = sum(int((b["labels"][:, 1:] != IGNORE_INDEX).sum()) for b in step)

    model.zero_grad()
    step_loss = 0.0
    for batch in step:
        loss = trainer.compute_loss(model, dict(batch), num_items_in_batch=torch.tensor(n_items))
        loss.backward()
        step_loss += loss.item()
    grads_step = _lora_grads(model)

    # The same rows, one at a time, read back from the batches (padding stripped by the attention mask).
    singles = []
    for batch in step:
        for r in range(batch["input_ids"].shape[0]):
            keep = batch["attention_mask"][r].bool()
            singles.append(
                {"input_ids": batch["input_ids"][r][keep].tolist(), "labels": batch["labels"][r][keep].tolist()}
            )
    model.zero_grad()
    per_row = _row_losses(model, singles)
    total_tokens = sum(n for _, n in per_row)
    assert total_tokens == n_items
    reference = sum(loss for loss, _ in per_row) / total_tokens
    reference.backward()
    grads_ref = _lora_grads(model)

    assert step_loss == pytest.approx(reference.item(), rel=1e-5)
    # token weighting, not row weighting: the plain mean of per-row means differs
    mean_of_means = sum(loss.item() / n for loss, n in per_row) / len(per_row)
    assert abs(mean_of_means - reference.item()) > 1e-4
    assert grads_step.keys() == grads_ref.keys() and grads_step
    for name in grads_ref:
        torch.testing.assert_close(grads_step[name], grads_ref[name], rtol=1e-4, atol=1e-6)


def test_the_lm_head_projects_only_the_label_tokens(tiny_trainer):
    """The loss forward skips prompt and padding positions before the LM head, exactly: no rounding up
    to chunks, no second projection; and a forward without labels still returns the full logits."""
    trainer, _ = tiny_trainer
    model = trainer.model
    model.train()
    batch = next(iter(trainer.get_train_dataloader()))
    lm_head = model.get_base_model().get_output_embeddings()
    seen = []
    hook = lm_head.register_forward_hook(lambda mod, args, out: seen.append(args[0].shape[:-1].numel()))
    try:
        loss = trainer.compute_loss(model, dict(batch))
        loss.backward()
        n_labels = int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
        assert 0 < n_labels < batch["input_ids"].numel() // 4
        assert seen == [n_labels]
        seen.clear()
        with torch.no_grad():
            out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        assert out.logits.shape[:2] == batch["input_ids"].shape and seen == [batch["input_ids"].numel()]
    finally:
        hook.remove()
        model.zero_grad()


def test_a_rows_logits_are_the_same_alone_and_in_a_padded_batch(tiny_trainer):
    trainer, examples = tiny_trainer
    model = trainer.model
    model.eval()
    rows = sorted(examples[:6], key=lambda e: len(e["input_ids"]))
    batch = trainer.data_collator([{"input_ids": e["input_ids"], "labels": e["labels"]} for e in rows])
    assert batch["input_ids"].shape[1] == len(rows[-1]["input_ids"])  # padded to the longest row only
    with torch.no_grad():
        together = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        for r, ex in enumerate(rows):
            alone = model(input_ids=torch.tensor([ex["input_ids"]])).logits
            n = len(ex["input_ids"])
            torch.testing.assert_close(together[r, :n], alone[0], rtol=1e-4, atol=1e-4)
    model.train()


def test_evaluation_reads_rows_longest_first(tiny_trainer):
    trainer, _ = tiny_trainer
    order = list(trainer._get_eval_sampler(trainer.eval_dataset))
    lengths = trainer.eval_dataset["length"]
    assert sorted(order) == list(range(len(lengths)))
    assert [lengths[i] for i in order] == sorted(lengths, reverse=True)


def test_training_after_an_evaluation_keeps_exact_gradients(tiny_trainer):
    """bitsandbytes repacks 4-bit weights for an inference-only kernel when a layer runs in eval mode;
    our trainer keeps them trainable, so gradients after an evaluation equal those before."""
    trainer, examples = tiny_trainer
    model = trainer.model
    assert all(p.dtype == torch.float32 for p in model.parameters() if p.requires_grad)  # fp32 run: fp32 LoRA
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.02, generator=torch.Generator().manual_seed(0))  # let lora_A grads flow
    ids = torch.tensor([examples[0]["input_ids"]])

    def grads():
        model.train()
        model.zero_grad()
        model(input_ids=ids).logits.float().logsumexp(-1).mean().backward()
        return _lora_grads(model)

    before = grads()
    metrics = trainer.evaluate()
    assert metrics["eval_loss"] > 0
    after = grads()
    for name in before:
        torch.testing.assert_close(after[name], before[name])


def test_a_model_already_repacked_by_an_evaluation_is_refused(tiny_model_path):
    from mcqa_core.errors import RunError
    from mcqa_core.models.loading import load_for_training
    from mcqa_core.training.model_patches import keep_4bit_layers_differentiable
    from mcqa_core.training.settings import load_config as _load

    cfg = _load(["--preset", "smoke"])
    model, _, _ = load_for_training(cfg.model, cfg.lora)
    assert keep_4bit_layers_differentiable(model) == 14  # a fresh model: every 4-bit layer pinned
    model.eval()
    with torch.no_grad():
        model(input_ids=torch.tensor([[1, 415, 2634, 314]]))  # pinned: no repacking now
    assert keep_4bit_layers_differentiable(model) == 14
    fresh, _, _ = load_for_training(cfg.model, cfg.lora)
    fresh.eval()
    with torch.no_grad():
        fresh(input_ids=torch.tensor([[1, 415, 2634, 314]]))
    from bitsandbytes.functional import has_avx512bf16

    if has_avx512bf16():  # only such CPUs repack
        with pytest.raises(RunError, match="already run for inference"):
            keep_4bit_layers_differentiable(fresh)
