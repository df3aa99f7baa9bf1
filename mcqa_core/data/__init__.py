"""Rows and text: MedMCQA rows (loading, validation, the offline split), the prompt, token ids and labels."""
