"""Params, sparsity (and later MACs, latency, accuracy) as plain dicts, shared by every command."""
