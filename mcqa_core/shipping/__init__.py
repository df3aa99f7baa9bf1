"""Shipping a trained adapter: merge into a standalone model, push to the Hugging Face hub."""
