"""Prompt shaping: chat templates (and, later, post-processing and memory)."""
