"""Training: settings and presets, batching, the trainer, ReLoRA, several processes, the output folder, the run."""
