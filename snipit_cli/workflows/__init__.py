"""One library call per command: options in, result document out. The CLI only wraps these."""
