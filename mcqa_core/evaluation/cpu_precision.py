"""The scorer's precision on CPU: bf16 matmuls where the CPU multiplies bf16 in hardware, fp32 for close calls,
and bitsandbytes' 4-bit layers on the kernel that suits whole prompts.

A CPU with native bf16 (AVX512-BF16, AMX) runs bf16 matmuls several times faster than fp32 ones
(docs/speed.md has the measured peaks). The model is not touched: `torch.autocast` runs the full-precision
matmuls in bf16 and each 4-bit layer dequantizes its NF4 weight straight to bf16 per call, so norms and the
residual stream stay fp32 and no bf16 copy of the weights is kept.
"""

from __future__ import annotations

from contextlib import contextmanager

# Twice the largest probability shift bf16 was measured to cause (docs/speed.md): a letter can differ from fp32's
# only where bf16's top two are closer than this, and those rows are scored again in fp32.
CLOSE_CALL = 0.15


def bf16_pays(model) -> bool:
    """Whether bf16 matmuls pay for this model here: its floating-point weights fp32 (full precision or 4-bit, not
    already half precision), on a CPU with native bf16 matmuls; never when $MCQA_CPU_BF16=0. A scorer asks only
    for a model whose `bf16_scoring` says so (`load_model`'s, or a training run's in bf16)."""
    import torch

    from ..models import precision_rule

    params = list(model.parameters())
    floats = [p for p in params if p.is_floating_point()]  # a 4-bit weight is packed in uint8
    return (
        bool(floats)
        and params[0].device.type == "cpu"
        and all(p.dtype == torch.float32 for p in floats)
        and all(dtype in (None, torch.float32, torch.bfloat16) for dtype in _4bit_compute_dtypes(model))
        and precision_rule.cpu_bf16_allowed()
    )


def _4bit_compute_dtypes(model) -> list:
    return [m.compute_dtype for m in cpu_4bit_layers(model)]


def cpu_4bit_layers(model) -> list:
    """bitsandbytes' 4-bit layers of a model that sit on the CPU (none without bitsandbytes)."""
    try:
        import bitsandbytes as bnb
    except ImportError:
        return []
    return [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit) and m.weight.device.type == "cpu"]


@contextmanager
def matmul_precision(model, bf16: bool):
    """Run the model's matmuls in bf16 (or, nested inside, back in fp32) until exit; restored on exit."""
    import torch

    device = next(model.parameters()).device
    layers = cpu_4bit_layers(model) if device.type == "cpu" else []
    saved = [(m.compute_dtype, m.compute_type_is_set) for m in layers]
    # In a bf16 training run the Trainer's accelerate wraps the model's forward in its own autocast, which would
    # undo the fp32 second look: run the forward it wrapped while bf16 is off.
    wrapped = vars(model).get("forward") if not bf16 and hasattr(model, "_original_forward") else None
    if wrapped is not None:
        model.forward = model._original_forward
    for m in layers:
        # Linear4bit casts its input to compute_dtype, and bitsandbytes dequantizes to the input's dtype.
        m.compute_dtype, m.compute_type_is_set = (torch.bfloat16 if bf16 else torch.float32), True
    try:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            yield
    finally:
        for m, (dtype, is_set) in zip(layers, saved):
            m.compute_dtype, m.compute_type_is_set = dtype, is_set
        if wrapped is not None:
            model.forward = wrapped


@contextmanager
def prompt_kernels_for_4bit_cpu(model):
    """Run bitsandbytes' 4-bit layers on CPU through dequantize + matmul while scoring prompts.

    In eval mode on an AVX512-BF16 CPU, bitsandbytes 0.50 repacks 4-bit weights for a bf16 gemv kernel:
    right for generation (one token at a time), but slower than dequantize + BLAS on whole prompts, and it
    rounds activations to bf16 even where fp32 was asked for. Marking only the Linear4bit layers as training
    selects the path training uses (those layers hold no dropout; the flag only picks the kernel). Restored on
    exit; the next eval-mode generate repacks the weights once.
    """
    try:
        from bitsandbytes.nn.modules import _convert_weight_packed_for_cpu_inverse as unpack
    except ImportError:  # no bitsandbytes (nothing is 4-bit), or a version without the CPU repacking
        yield
        return
    layers = cpu_4bit_layers(model)
    flags = [m.training for m in layers]
    for m in layers:
        if getattr(m.weight.quant_state, "packing_format_for_cpu", False):
            m.weight.data, m.weight.quant_state = unpack(m.weight.data, m.weight.quant_state)
        m.training = True
    try:
        yield
    finally:
        for m, flag in zip(layers, flags):
            m.training = flag
