"""MedMCQA LoRA fine-tuning, scoring and evaluation: the library behind train_adapter.py and the app."""
