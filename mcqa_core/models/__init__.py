"""Models: loading a base (4-bit or not) with a fresh LoRA, the adapter folder's run record, loading for inference."""
