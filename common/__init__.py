"""Helpers shared by the Llama 2 streaming recipe notebooks (filled in as modules land)."""
