"""snipit: prune neural-network checkpoints with SNIP-it.

The public library surface is small: :func:`load_model` reads any checkpoint snipit writes
(or a state_dict plus an arch spec) back into an ``nn.Module``.

Both names are resolved on first use: importing the package (as the CLI does for ``snipit --help``)
must pay neither for torch nor for ``importlib.metadata``.
"""

__all__ = ["__version__", "load_model"]


def __getattr__(name: str):
    if name == "load_model":
        from snipit_cli.models.loading import load_model

        return load_model
    if name == "__version__":
        return _version()
    raise AttributeError(f"module 'snipit_cli' has no attribute {name!r}")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("snipit-cli")  # the distribution; the command is `snipit`
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0.0.0+unknown"
