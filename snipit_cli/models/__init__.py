"""Turning model specs and checkpoint files into ``nn.Module``s, and writing checkpoints."""
