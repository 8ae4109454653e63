"""The one error boundary: exception -> one line on stderr + exit code; traceback only with --debug.

The root app (``cli/app.py``) enters it once around every command, its option parsing included;
``--debug`` is each command's flag, remembered in the click context's shared ``meta`` as it is parsed.
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import NoReturn

import typer

from snipit_cli.errors import SnipitError
from snipit_cli.fileio import WriteError
from snipit_cli.launch import launched
from snipit_cli.sync import AGREED, PeerError

INTERNAL = 1
INTERRUPTED = 130  # 128 + SIGINT
BROKEN_PIPE = 141  # 128 + SIGPIPE: what a shell sees from `git log | head`


#: Why the system refused a write, and what the user can do about it (the advice that follows
#: ``error: cannot write FILE: <the system's words>``). Any other OSError with one of these errnos
#: is the machine's state too (a folder it may not read, a failing disk), not a snipit bug: it
#: gets one line naming the file, without the advice, and exit 2 as well.
OS_ERRORS: dict[int, str] = {
    errno.ENOSPC: "free some space there or choose another -o folder",
    errno.EDQUOT: "free some of your quota or choose another -o folder",
    errno.EFBIG: "the file system or the file size limit (ulimit -f) allows no file this big",
    errno.EROFS: "that file system is mounted read-only; choose another -o folder",
    errno.EACCES: "you may not write there; choose another -o folder",
    errno.EPERM: "you may not write there; choose another -o folder",
    errno.EISDIR: "a folder has that name; choose a file name",
    errno.ENAMETOOLONG: "choose a shorter file name",
    errno.EIO: "the disk reported an I/O error; check it or choose another -o folder",
}


def os_error_message(exc: OSError) -> str | None:
    """The one line for an OSError the user's machine caused; None for one that is snipit's bug."""
    advice = OS_ERRORS.get(exc.errno or 0)
    reason = exc.strerror or (os.strerror(exc.errno) if exc.errno else str(exc))
    if isinstance(exc, WriteError):
        return f"cannot write {exc.filename}: {reason}" + (f" ({advice})" if advice else "")
    if advice is None:
        return None
    return f"{exc.filename}: {reason}" if exc.filename else reason


class Terminated(KeyboardInterrupt):
    """Raised by the SIGTERM handler; unwinds like Ctrl-C, exits 128 + the signal number."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.exit_code = 128 + signum


def _one_line(text: str) -> str:
    return " ".join(text.split())


def report_error(message: str) -> None:
    """The one format of every error line: ``error: <problem and fix>``."""
    sys.stderr.write(f"error: {_one_line(message)}\n")


def _speaker(exc: BaseException) -> str | None:
    """Under torchrun, who prints an error, so N processes show it once: the rank it happened on
    when the ranks agreed on it mid-run (``sync.py``; as ``rank k:``), rank 0 for the
    errors every rank meets alike (bad options, an existing output), nobody for a peer's error.
    Returns the line's prefix, or None for silence."""
    rank = _rank()
    if isinstance(exc, PeerError):
        return None
    if getattr(exc, AGREED, False) and rank != 0:
        return f"rank {rank}: "
    if rank == 0 or not isinstance(exc, SnipitError):  # an internal error may be this rank's own
        return "" if rank == 0 else f"rank {rank}: "
    return None


def _rank() -> int:
    try:
        return launched().rank
    except SnipitError:  # a malformed RANK: speak
        return 0


#: Key of ``--debug`` in the click context's ``meta`` (shared by the root and command contexts).
DEBUG = "snipit.debug"


def remember_debug(ctx: typer.Context, value: bool) -> bool:
    """Callback of ``--debug``: tell the root's error boundary, which runs outside the command."""
    ctx.meta[DEBUG] = value
    return value


@contextmanager
def error_boundary(debugging: Callable[[], bool]) -> Iterator[None]:
    """Run a command (parsing and body); translate failures into a message and an exit code.

    ``debugging`` is asked only when something failed: ``--debug`` is parsed inside the boundary.
    Click's own exits and usage errors pass through to the root's ``main``.
    """
    try:
        yield
    except (typer.Exit, typer.Abort, typer.TyperException):
        raise
    except SnipitError as exc:
        if debugging():
            raise
        prefix = _speaker(exc)
        if prefix is not None:
            report_error(prefix + str(exc))
        raise typer.Exit(exc.exit_code) from None
    except BrokenPipeError:
        silence_stdout()
        raise typer.Exit(BROKEN_PIPE) from None
    except KeyboardInterrupt as exc:
        if debugging():
            raise
        if _rank() == 0:
            sys.stderr.write("interrupted; no partial output was left behind\n")
        raise typer.Exit(getattr(exc, "exit_code", INTERRUPTED)) from None
    except OSError as exc:
        if debugging():
            raise
        message = os_error_message(exc)
        if message is None:
            _internal(exc)
        prefix = _speaker(exc)
        if prefix is not None:
            report_error(prefix + message)
        raise typer.Exit(2) from None
    except Exception as exc:
        if debugging():
            raise
        _internal(exc)


def _internal(exc: Exception) -> NoReturn:
    """An error snipit did not foresee: its type and text, pointing at --debug; exit 1."""
    prefix = _speaker(exc)
    if prefix is None:
        raise typer.Exit(INTERNAL) from None
    sys.stderr.write(
        prefix + f"internal error: {type(exc).__name__}: {_one_line(str(exc))} "
        "(re-run with --debug for the traceback)\n"
    )
    raise typer.Exit(INTERNAL) from None


def silence_stdout() -> None:
    """The reader of stdout went away (``snipit report --json | head -c1``): nothing is wrong, so
    exit quietly as CLI tools do. stdout now points at /dev/null so the interpreter's final flush
    of the unwritten buffer cannot raise again at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout is not a real file (an in-process runner)
        pass
