"""The command-line entry points (console scripts mcqa-train, mcqa-eval, mcqa-export, mcqa-publish)."""
