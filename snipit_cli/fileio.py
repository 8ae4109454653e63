"""Atomic output files: write to a temp file in the target folder, then rename.

A crash, Ctrl-C or a failed write never leaves a partial file or clobbers an existing one.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from snipit_cli.errors import OutputError


def check_writable(path: Path, force: bool, inputs: tuple[Path, ...] = ()) -> None:
    """Refuse an existing ``path`` without ``force``, any input file, and a missing folder."""
    resolved = path.resolve()
    if any(resolved == p.resolve() for p in inputs if p.exists()):
        raise OutputError(f"refusing to write over the input {path}; choose another -o/--output")
    if path.exists() and not force:
        raise OutputError(f"{path} already exists; pass --force to overwrite it or choose another -o")
    if not path.parent.is_dir():
        raise OutputError(f"output folder {path.parent} does not exist; create it first")


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temp path beside ``path``; on success it replaces ``path``, on error it is removed."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        # mkstemp (and safetensors, which re-creates the file) make it 0600: give it the usual mode
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp_path)`` and move the result to ``path`` only if it succeeded."""
    write_all_atomic({path: write})


def write_all_atomic(writers: dict[Path, Callable[[Path], None]]) -> None:
    """Write every file to a temp file first; rename them into place only once all succeeded.

    So a run that fails while writing its second output leaves neither behind.
    """
    try:
        with ExitStack() as stack:
            for path, write in writers.items():
                write(stack.enter_context(atomic_path(path)))
    except OSError as exc:
        raise OutputError(
            f"could not write {exc.filename or 'an output file'}: {exc.strerror or exc}"
        ) from exc
