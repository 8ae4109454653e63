"""snipit: prune neural-network checkpoints with SNIP-it.

The public library surface is small: :func:`load_model` reads any checkpoint snipit writes
(or a state_dict plus an arch spec) back into an ``nn.Module``.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("snipit-cli")  # the distribution; the command is `snipit`
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

from snipit_cli.models.loading import load_model  # noqa: E402

__all__ = ["__version__", "load_model"]
