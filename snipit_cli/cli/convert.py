"""``snipit convert``: rewrite a checkpoint's tensors dense or sparse (lossless)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from snipit_cli.cli import options as opt
from snipit_cli.cli.output import Output

EXAMPLES = """
Examples:

  snipit convert pruned.safetensors pruned-dense.safetensors --storage dense

  snipit convert pruned-dense.safetensors pruned.safetensors --storage sparse --force
"""


def convert(
    source: Annotated[
        Path, typer.Argument(metavar="IN", help="A .safetensors file, snipit's or plain.", show_default=False)
    ],
    output: Annotated[
        Path, typer.Argument(metavar="OUT", help="The .safetensors file to write.", show_default=False)
    ],
    storage: Annotated[opt.StorageFormat, typer.Option(help=opt.STORAGE_HELP, show_default=False)],
    force: opt.Force = False,
    json_: opt.Json = False,
    quiet: opt.Quiet = False,
    debug: opt.Debug = False,
) -> None:
    """Rewrite IN's tensors as --storage sparse or dense into OUT, keeping its snipit metadata;
    decoding is bit-identical, so OUT loads to the same model."""
    from snipit_cli.workflows.convert import ConvertRequest, run_convert

    out = Output(json_mode=json_, quiet=quiet)
    result = run_convert(ConvertRequest(source, output, opt.StorageFormat(storage).value, force))
    out.result(
        result,
        f"wrote {result['file']['path']} ({result['storage']['encoding']}, {result['encoded_tensors']} "
        f"of {result['tensors']} tensors encoded): {result['file']['size']:,} bytes, "
        f"{result['size_ratio']:.3f}x of {result['source_file']['path']}",
    )
