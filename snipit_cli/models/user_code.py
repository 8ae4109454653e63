"""User code as an architecture: importing ``module:callable`` or ``file.py:callable``, and the check
that code a checkpoint names is an installed package's, never a file planted beside it."""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import site
import sys
import sysconfig
from pathlib import Path
from typing import Any

from snipit_cli.errors import ModelError


def check_recorded_code(spec: str, checkpoint: Path | None = None) -> None:
    """Refuse a ``module:Class`` named by a checkpoint unless importing it runs installed code only.

    Importing runs the module's top-level code, and a file beside a downloaded checkpoint, in the
    working folder (``sys.path[0]`` under ``python -m``) or in the launching script's folder would
    be found first. So before anything is imported, the top-level module is located with
    ``importlib.util.find_spec`` (which runs nothing of it) and must lie in site-packages or in
    another folder of ``sys.path`` (``PYTHONPATH``) that is none of: the working folder, the
    checkpoint's folder, the script's folder, the standard library (``this``, ``antigravity``
    act on import). Anything else needs ``--arch`` to confirm.
    """
    module_name = spec.rpartition(":")[0]
    confirm = f"pass --arch {spec} to confirm"
    if module_name.endswith(".py"):
        raise ModelError(
            f"the checkpoint's architecture is the code file {spec}; snipit does not run files "
            f"named by a checkpoint: {confirm}"
        )
    parts = module_name.split(".")
    if not all(part.isidentifier() for part in parts) or "__main__" in parts:
        raise ModelError(f"the checkpoint's architecture {spec} names no importable module: {confirm}")
    try:
        found = importlib.util.find_spec(parts[0])
    except (ImportError, ValueError):  # a module in sys.modules without a spec
        found = None
    if found is None:
        raise ModelError(
            f"the checkpoint's architecture {spec} needs module {parts[0]!r}, which is not installed; "
            f"install it, or {confirm} (with its folder on PYTHONPATH)"
        )
    places = [found.origin] if found.has_location else list(found.submodule_search_locations or [])
    untrusted = [p for p in places if not _installed_location(Path(p), checkpoint)]
    if not places or untrusted:
        where = f" ({untrusted[0]})" if untrusted else ""
        raise ModelError(
            f"the checkpoint's architecture {spec} is not code of an installed package{where}; snipit "
            "imports nothing a checkpoint names from the working folder, the checkpoint's folder or "
            f"the standard library: {confirm}"
        )


def _installed_location(path: Path, checkpoint: Path | None) -> bool:
    path = path.resolve()
    if any(_within(path, folder) for folder in _site_folders()):
        return True
    refused = [Path.cwd(), *_stdlib_folders()]
    if checkpoint is not None:
        refused.append(checkpoint.expanduser().resolve().parent)
    if sys.argv and sys.argv[0] and Path(sys.argv[0]).is_file():
        refused.append(Path(sys.argv[0]).resolve().parent)
    if any(_within(path, folder) for folder in refused):
        return False
    on_path = [Path(entry).resolve() for entry in sys.path if entry and Path(entry).is_absolute()]
    return any(_within(path, folder) for folder in on_path)


def _site_folders() -> list[Path]:
    folders = [sysconfig.get_paths()[key] for key in ("purelib", "platlib")]
    folders += getattr(site, "getsitepackages", list)()
    if site.ENABLE_USER_SITE:
        folders.append(site.getusersitepackages())
    return [Path(f).resolve() for f in folders]


def _stdlib_folders() -> list[Path]:
    return [Path(sysconfig.get_paths()[key]).resolve() for key in ("stdlib", "platstdlib")]


def _within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def import_callable(spec: str, origin: str) -> Any:
    """The callable ``module:name`` (or ``file.py:name``) names; ``origin`` says who named it."""
    module_name, _, attr = spec.rpartition(":")
    # A module's top-level prints (``this``) go to stderr: stdout is for --json.
    with contextlib.redirect_stdout(sys.stderr):
        if module_name.endswith(".py"):
            module = _import_file(Path(module_name))
        else:
            try:
                module = importlib.import_module(module_name)
            except ImportError as exc:
                raise ModelError(
                    f"cannot import {module_name!r} (named by {origin}): {exc}; "
                    "install it or put it on PYTHONPATH"
                ) from exc
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ModelError(f"{module_name!r} has no attribute {attr!r} (named by {origin})") from None


def _import_file(path: Path) -> Any:
    if not path.is_file():
        raise ModelError(f"arch file {str(path)!r} does not exist; check the path in --arch")
    name = f"snipit_user_arch_{abs(hash(str(path)))}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ModelError(f"cannot import {str(path)!r} as Python code")
    module = importlib.util.module_from_spec(spec)
    # Sibling imports in the user's file (``from blocks import Block``) should work as they do
    # when the user runs it; the folder is on sys.path only while the file executes.
    sys.path.insert(0, str(path.parent))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(path.parent))
    sys.modules[name] = module
    return module
