"""Thin Typer layer: one module per command, wired in ``app.py``."""
