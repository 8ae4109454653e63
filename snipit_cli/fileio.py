"""Output files, committed as a set.

A run checks every output before any work (:func:`check_writable`), writes each to a temp file
beside it, and publishes them only once all are written. Publishing never replaces a file the run
was not allowed to replace: without ``--force`` it is a hard link, which fails if the name
appeared meanwhile (another run writing the same output). If publishing one output fails, the ones
already published are taken back (a replaced file from its backup), so either every output of a
run appears or none changes. A killed run can leave only temp files of snipit's own naming; the
next run in that folder removes those whose process is gone.

A hub-style output folder (``-o DIR/``) is one output too: its files are written into a temp
folder beside it, which is renamed into place as a whole (:class:`Folder`), so a reader never sees
a folder with a checkpoint and no config, and ``--force`` replaces only a folder of snipit's files.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import shutil
import socket
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

from snipit_cli.errors import OutputError

_HOST = re.sub(r"[^A-Za-z0-9]", "_", socket.gethostname()) or "host"
#: ``.NAME.RANDOM.snipit-HOST-PID.tmp`` (a temp) or ``.bak`` (a replaced file kept until all are out)
_LEFTOVER = re.compile(r"\..+\.snipit-(?P<host>[A-Za-z0-9_]+)-(?P<pid>\d+)\.(?:tmp|bak)")
_NAME_KEEP = 100  # of the target's name in a temp's name: NAME_MAX is 255
#: File systems without hard links (some FUSE, vfat, SMB) say so with one of these.
_NO_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.EMLINK, errno.ENOSYS}
_OS_ERROR_IN_TEXT = re.compile(r"\(os error (\d+)\)")  # how Rust (safetensors) words an OSError


class WriteError(OSError):
    """Writing an output failed for a reason of the system's (a full disk, a file size limit, a
    read-only folder): the errno and the target's name; the CLI's error boundary words it."""

    exit_code = 2  # what a torchrun peer exits with when rank 0 could not write


class OutputRaceError(OutputError):
    """An output appeared while the run was writing it (another run?)."""


#: The files a hub-style folder of snipit's holds; ``--force`` replaces a folder holding no others.
FOLDER_FILES = frozenset(
    {"config.json", "model.safetensors", "README.md", "report.json", "model.train-state.safetensors"}
)


@dataclass
class Folder:
    """The writer of a folder output: one writer per file name, called in order with the path of
    that file inside the temp folder (a later writer may read what an earlier one wrote)."""

    files: dict[str, Callable[[Path], None]] = field(default_factory=dict)

    def __call__(self, tmp: Path) -> None:
        for name, write in self.files.items():
            write(tmp / name)


@dataclass
class _Plan:
    """What :func:`check_writable` decided for one output: replace it (``--force``), and which
    file this run itself published there (a later checkpoint of the same run replaces it)."""

    force: bool
    ours: tuple[int, int] | None = None


# The workflows call check_writable(path, force) before the work and write_all_atomic(writers)
# after it, so the decision travels from one to the other here, keyed by the absolute path.
_PLANS: dict[str, _Plan] = {}


def check_writable(
    path: Path, force: bool, inputs: tuple[Path, ...] = (), option: str = "-o", folder: bool = False
) -> None:
    """Refuse, before any work: a missing or unwritable folder, a folder as the target, any name
    for an input file (a hard link, a symlink, a bind mount: compared by device and inode), and an
    existing ``path`` (a dangling symlink too) without ``force``. ``option`` names the path's
    option in the advice. A ``folder`` output is checked by :func:`_check_folder_output`."""
    _check_folder(path)
    clean_leftovers(path.parent)
    if folder:
        _check_folder_output(path, force, inputs, option)
        return
    if path.is_dir():
        raise OutputError(f"{path} is a folder; name a file (--force replaces files, never folders)")
    if any(_same_file(path, p) for p in inputs):
        raise OutputError(f"refusing to write over the input {path}; choose another -o/--output")
    if os.path.lexists(path) and not force:
        if not path.exists():
            raise OutputError(
                f"{path} is a symlink to a missing file; pass --force to replace the link "
                f"or choose another {option}"
            )
        raise OutputError(f"{path} already exists; pass --force to overwrite it or choose another {option}")
    _PLANS[_key(path)] = _Plan(force)


def _check_folder_output(path: Path, force: bool, inputs: tuple[Path, ...], option: str) -> None:
    """A folder output replaces, with ``force``, only a folder of snipit's own files (never the
    working folder, a parent of it, or one holding the input or anything else)."""
    if os.path.lexists(path) and not path.is_dir():
        raise OutputError(f"{path} exists and is not a folder; choose another {option}")
    if not path.exists():
        _PLANS[_key(path)] = _Plan(force)
        return
    if not force:
        raise OutputError(f"{path} already exists; pass --force to replace it or choose another {option}")
    if Path.cwd().resolve().is_relative_to(path.resolve()):
        raise OutputError(f"{path} holds the working folder; choose another {option}")
    if any(p.resolve().is_relative_to(path.resolve()) for p in inputs):
        raise OutputError(f"refusing to replace {path}, which holds the input; choose another {option}")
    others = sorted(entry.name for entry in path.iterdir() if entry.name not in FOLDER_FILES)
    if others:
        raise OutputError(
            f"{path} holds files snipit did not write ({', '.join(others[:3])}); --force replaces only "
            f"a folder of {', '.join(sorted(FOLDER_FILES))}; choose another {option}"
        )
    _PLANS[_key(path)] = _Plan(force)


def _check_folder(path: Path) -> None:
    if not path.parent.is_dir():
        raise OutputError(f"output folder {path.parent} does not exist; create it first")
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write into {path.parent} (read-only or not yours); choose another -o")


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist
        return False


def _key(path: Path) -> str:
    return os.path.abspath(path)


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path, follow_symlinks=False)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def clean_leftovers(folder: Path) -> None:
    """Remove temp files and backups that a killed snipit run left in ``folder``: only names of
    snipit's own pattern, written on this host by a process that no longer exists."""
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        match = _LEFTOVER.fullmatch(name)
        if match and match["host"] == _HOST and not _alive(int(match["pid"])):
            _remove(folder / name)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _leftover_name(target: Path, kind: str) -> Path:
    tag = secrets.token_hex(4)
    return target.with_name(f".{target.name[:_NAME_KEEP]}.{tag}.snipit-{_HOST}-{os.getpid()}.{kind}")


def write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp_path)`` and move the result to ``path`` only if it succeeded."""
    write_all_atomic({path: write})


def write_all_atomic(writers: dict[Path, Callable[[Path], None]]) -> None:
    """Write every file to a temp file first; publish them only once all are written, and take
    back the published ones if a later one cannot be.

    A path that :func:`check_writable` passed is replaced only if it allowed that (``--force``)
    or the file there is this run's own; a path it never saw (a library call) is replaced.
    """
    for path, write in writers.items():
        if path.is_dir() and not isinstance(write, Folder):
            raise OutputError(f"{path} is a folder; name a file (--force replaces files, never folders)")
        clean_leftovers(path.parent)
    temps: dict[Path, Path] = {}
    try:
        for path, write in writers.items():
            temps[path] = _leftover_name(path, "tmp")
            _write_temp(path, temps[path], write)
        _publish_all(temps)
    finally:
        for tmp in temps.values():
            _remove(tmp)


def _remove(path: Path) -> None:
    """Remove a temp or backup of snipit's, a file or a folder; quietly, as cleanup."""
    with suppress(OSError):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def _write_temp(target: Path, tmp: Path, write: Callable[[Path], None]) -> None:
    try:
        if isinstance(write, Folder):
            os.mkdir(tmp, 0o700)
            write(tmp)
            for inner in tmp.iterdir():
                os.chmod(inner, 0o666 & ~_umask())
            os.chmod(tmp, 0o777 & ~_umask())
            return
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        write(tmp)
        # safetensors re-creates the file as 0600: give it the usual mode
        os.chmod(tmp, 0o666 & ~_umask())
    except OSError as exc:
        raise WriteError(exc.errno, exc.strerror, str(target)) from exc
    except Exception as exc:
        code = _os_error_code(exc)
        if code is None:
            raise
        raise WriteError(code, os.strerror(code), str(target)) from exc


def _os_error_code(exc: Exception) -> int | None:
    """The errno inside a library's error text: safetensors says ``I/O error: No space left on
    device (os error 28)`` in a SafetensorError, not an OSError."""
    match = _OS_ERROR_IN_TEXT.search(str(exc))
    return int(match.group(1)) if match else None


def _publish_all(temps: dict[Path, Path]) -> None:
    published: list[tuple[Path, Path | None]] = []  # (target, backup of the file it replaced)
    try:
        for target, tmp in temps.items():
            plan = _PLANS.get(_key(target))
            ours = plan is not None and plan.ours is not None and plan.ours == _identity(target)
            may_replace = plan is None or plan.force or ours
            published.append((target, _publish(tmp, target, may_replace)))
            if plan is not None:
                plan.ours = _identity(target)
    except BaseException:  # Ctrl-C and SIGTERM too: take back what is out
        for target, backup in reversed(published):
            _take_back(target, backup)
        raise
    for _, backup in published:
        if backup is not None:
            _remove(backup)


def _publish(tmp: Path, target: Path, may_replace: bool) -> Path | None:
    """Move ``tmp`` to ``target``; returns the backup of the file it replaced, if any."""
    try:
        if not may_replace:
            _link_new(tmp, target)
            return None
        backup = _backup(target)
        try:
            os.replace(tmp, target)
        except BaseException:
            if backup is not None:
                _take_back(target, backup)
            raise
        return backup
    except OSError as exc:
        raise WriteError(exc.errno, exc.strerror, str(target)) from exc


def _link_new(tmp: Path, target: Path) -> None:
    """Publish ``tmp`` as ``target`` only if no file has that name: a hard link cannot replace.
    A folder claims its name with ``mkdir`` (which fails if it exists), then moves over it."""
    if tmp.is_dir():
        try:
            os.mkdir(target)
        except FileExistsError:
            raise _appeared(target) from None
        os.replace(tmp, target)  # a folder replaces an empty folder
        return
    try:
        os.link(tmp, target, follow_symlinks=False)
    except FileExistsError:
        raise _appeared(target) from None
    except OSError as exc:
        if exc.errno not in _NO_LINKS:
            raise
        # No hard links here: claim the name with O_EXCL (which also fails if it exists), then
        # move the temp over the empty file this run just made.
        try:
            os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:
            raise _appeared(target) from None
        os.replace(tmp, target)


def _appeared(target: Path) -> OutputRaceError:
    return OutputRaceError(
        f"{target} appeared while this run was writing it (another snipit run?); pass --force to replace it"
    )


def _backup(target: Path) -> Path | None:
    """Keep the file about to be replaced under a leftover name until every output is out."""
    if not os.path.lexists(target):
        return None
    backup = _leftover_name(target, "bak")
    if os.path.isdir(target) and not os.path.islink(target):
        os.rename(target, backup)  # a folder cannot be hard-linked: the name is empty until replaced
        return backup
    try:
        os.link(target, backup, follow_symlinks=False)
    except OSError as exc:
        if exc.errno not in _NO_LINKS:
            raise
        os.rename(target, backup)  # no hard links: the name is empty until the replace below
    return backup


def _take_back(target: Path, backup: Path | None) -> None:
    """Undo one publish: the replaced file comes back, or the new one goes."""
    with suppress(OSError):
        if backup is None:
            _remove(target)
        elif _same_file(backup, target):  # a hard-linked backup of a file never replaced
            backup.unlink()
        else:
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            os.replace(backup, target)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
