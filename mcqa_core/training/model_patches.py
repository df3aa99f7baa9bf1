"""Two fixes the trainer installs on the model before training: bitsandbytes' 4-bit layers kept on their
trainable kernel, and the LM head run on the label tokens only (the same loss as TRL's, less work).
docs/speed.md ("Training throughput", "Memory") says what each saves."""

from __future__ import annotations

from ..errors import RunError

_CHUNK = 1024  # label tokens whose logits are held at once (1024 x 128,256 fp32 = 0.5 GB)


def keep_4bit_layers_differentiable(model) -> int:
    """Stop bitsandbytes from switching a training model's 4-bit layers to its inference-only CPU kernel.

    bitsandbytes 0.50 on a CPU with AVX512-BF16 repacks a `Linear4bit` weight for a bf16 inference kernel
    the first time the layer runs in eval mode (an evaluation) and keeps it packed; that kernel has no
    autograd formula, so later training steps silently drop the gradient through every 4-bit matmul.
    Call this before the first evaluation (MCQATrainer does); bitsandbytes' own unpacking is lossy, so an
    already repacked model is refused. Returns the number of 4-bit layers.
    """
    try:
        from bitsandbytes.nn import Linear4bit
    except ImportError:
        return 0
    layers = [m for m in model.modules() if isinstance(m, Linear4bit)]
    if any(getattr(m.weight.quant_state, "packing_format_for_cpu", False) for m in layers):
        raise RunError(
            "the 4-bit model was already run for inference (bitsandbytes repacked its weights for "
            "a kernel that cannot train); load it again before training"
        )
    for m in layers:
        m.support_avx512bf16_for_cpu = False
    return len(layers)


def lm_head_on_label_tokens_only(model) -> None:
    """Make a causal LM's loss forward project only the label tokens through the LM head.

    TRL's default loss ("chunked_nll") drops prompt positions too, but rounds the label tokens up to chunks
    of 256 positions and recomputes every chunk in the backward pass; a MedMCQA row has only its answer's
    few label tokens. Here they are projected once, exactly, with an fp32 log-softmax (the same math as
    "nll"); above `_CHUNK` label tokens they go in checkpointed chunks, so the logits never exceed one
    chunk in memory. Without labels (generation, scoring) the model's own forward runs, unchanged.
    """
    import torch
    import torch.nn.functional as F
    from trl.trainer.sft_trainer import _ChunkedCELMHeadOutput

    target = model.get_base_model() if hasattr(model, "get_base_model") else model
    lm_head = target.get_output_embeddings()
    own_forward = type(target).forward.__get__(target)

    def _label_loss(hidden, labels):
        logits = lm_head(hidden).float()
        log_p = F.log_softmax(logits, dim=-1)
        loss = F.nll_loss(log_p, labels, reduction="sum")
        with torch.no_grad():
            correct = (logits.argmax(-1) == labels).sum().float()
            entropy = -(log_p.exp() * log_p).sum()
        return loss, correct, entropy

    def forward(input_ids=None, attention_mask=None, labels=None, num_items_in_batch=None, shift_labels=None, **kwargs):
        if labels is None and shift_labels is None:
            return own_forward(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        kwargs.pop("use_cache", None)
        hidden = target.base_model(
            input_ids=input_ids, attention_mask=attention_mask, use_cache=False, **kwargs
        ).last_hidden_state
        if shift_labels is None:
            hidden, shift_labels = hidden[:, :-1], labels[:, 1:]
        keep = shift_labels != -100
        hidden, targets = hidden[keep], shift_labels[keep]
        n = targets.numel()
        if n <= _CHUNK:
            loss, correct, entropy = _label_loss(hidden, targets)
        else:
            parts = [
                torch.utils.checkpoint.checkpoint(
                    _label_loss, hidden[i : i + _CHUNK], targets[i : i + _CHUNK], use_reentrant=False
                )
                for i in range(0, n, _CHUNK)
            ]
            loss, correct, entropy = (sum(p[k] for p in parts) for k in range(3))
        denominator = num_items_in_batch if num_items_in_batch is not None else max(n, 1)
        if isinstance(denominator, torch.Tensor):
            denominator = denominator.to(loss.device)
        return _ChunkedCELMHeadOutput(
            loss=loss / denominator,
            logits=None,
            num_correct_tokens=correct,
            entropy_sum=entropy,
            num_valid_tokens=keep.sum(),
        )

    target.forward = forward
