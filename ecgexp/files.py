"""Writing files safely: names from data confined to their folder, nothing partial under a
final name, nothing a user wrote overwritten.

- :func:`safe_file_name` / :func:`confined_path`: a file name derived from data (a record
  name, an exam id) keeps only letters, digits, ``.``, ``_`` and ``-`` (other characters
  become ``_``; no leading dot, no path separators), and the path it gives is checked to lie in
  the output folder.
- :func:`atomic_path` / :func:`write_text_atomic`: an output is written under a temporary name
  in the same folder and renamed into place when complete; an existing file is refused unless
  the caller owns it (``replace=True``, e.g. a run's own ``metrics.json``).
- :func:`staged_folder`: a folder of outputs (a report) is written whole into a hidden sibling
  and renamed into place when complete; a failure (a full disk) leaves nothing.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

from ecgexp.errors import UserError

UNSAFE_CHARACTERS = re.compile(r"[^A-Za-z0-9._-]+")
MAX_NAME_LENGTH = 200


def safe_file_name(name: object, key: str) -> str:
    """``name`` as a plain file name: unsafe characters (``/``, ``\\``, spaces, ...) become
    ``_`` and leading dots are dropped, so ``../../etc/passwd`` gives ``_.._etc_passwd``.
    ``key`` is the config key or column named in the error for a name left empty."""
    text = UNSAFE_CHARACTERS.sub("_", str(name)).lstrip(".")
    if not text.strip("_") or len(text) > MAX_NAME_LENGTH:
        raise UserError(f"{key}: '{name}' gives no usable file name (empty, only dots or "
                        f"separators, or over {MAX_NAME_LENGTH} characters)")
    return text


def confined_path(folder: Path, name: object, key: str, suffix: str = "") -> Path:
    """``folder / (safe_file_name(name) + suffix)``, checked to lie inside ``folder``."""
    folder = Path(folder)
    path = folder / (safe_file_name(name, key) + suffix)
    if path.resolve().parent != folder.resolve():
        raise UserError(f"{key}: '{name}' would be written outside '{folder}'")
    return path


def writable_folder(folder: str | Path, key: str, written: str | Path | None = None) -> Path:
    """Checks, without creating anything, that ``folder`` is or can be made a folder this
    process can write to: its nearest existing ancestor must be a writable folder (not a file,
    a broken link or on a read-only file system). ``written`` (default ``folder``) is what the
    messages say cannot be written."""
    folder = Path(folder)
    written = Path(written) if written is not None else folder
    existing = folder
    while not existing.exists() and existing != existing.parent:
        if existing.is_symlink():
            raise UserError(f"{key}: the folder '{existing}' of '{written}' is a broken link; "
                            f"choose another {key}")
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"{key}: '{existing}' is a file, not a folder, so '{written}' cannot "
                        f"be written there; choose another {key}")
    if not os.access(existing, os.W_OK | os.X_OK):
        why = "is on a read-only file system" if _read_only(existing) else "is not writable"
        raise UserError(f"{key}: the folder '{existing}' {why}, so '{written}' cannot be "
                        f"written there; choose another {key}")
    return folder


def _read_only(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):
        return False


def make_folder(folder: str | Path, key: str) -> Path:
    """Creates ``folder`` (and its parents) after :func:`writable_folder`; returns it."""
    folder = writable_folder(folder, key)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"{key}: cannot create '{folder}' ({error.strerror or error}); choose "
                        f"another {key}") from error
    return folder


def distinct_file_names(names: Sequence, key: str, what: str, suffix: str = "",
                        ids: Sequence | None = None) -> list[str]:
    """``safe_file_name`` of every name; two names giving one file (the same name twice, or
    ``a/b`` and ``a_b``) are refused rather than one file overwriting the other."""
    ids = list(ids) if ids is not None else None
    seen: dict[str, int] = {}
    files = []
    for i, name in enumerate(names):
        file_name = safe_file_name(name, f"{key} ({what} {name!r})") + suffix
        if file_name in seen:
            j = seen[file_name]
            where = f" (exam_id {ids[j]} and {ids[i]})" if ids is not None else ""
            which = (f"'{name}' twice{where}" if str(names[j]) == str(name) else
                     f"'{names[j]}' and '{name}'{where}, which both give the file name "
                     f"'{file_name}'")
            raise UserError(f"{key}: {what} holds {which}; each needs a file of its own, so "
                            f"make them unique")
        seen[file_name] = i
        files.append(file_name)
    return files


def _temporary_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")


@contextlib.contextmanager
def atomic_path(path: Path, key: str = "output", replace: bool = False) -> Iterator[Path]:
    """Yields a temporary path beside ``path``; when the block ends without an exception it
    is renamed to ``path`` (in one step on the same file system), otherwise removed. An
    existing ``path`` is refused unless ``replace`` (the caller's own file)."""
    path = Path(path)
    if path.exists() and not replace:
        raise UserError(f"{key}: '{path}' exists; nothing is overwritten (choose another "
                        f"{key} or move the file)")
    temporary = _temporary_name(path)
    try:
        yield temporary
        os.replace(temporary, path) if replace else _rename_new(temporary, path, key)
    finally:
        temporary.unlink(missing_ok=True)


def _rename_new(temporary: Path, path: Path, key: str) -> None:
    """Renames ``temporary`` to ``path`` unless a file appeared there meanwhile."""
    try:
        os.link(temporary, path)  # fails if path exists, unlike rename
    except FileExistsError:
        raise UserError(f"{key}: '{path}' appeared while it was being written; nothing is "
                        f"overwritten") from None
    except OSError:  # file systems without hard links
        if path.exists():
            raise UserError(f"{key}: '{path}' exists; nothing is overwritten") from None
        os.replace(temporary, path)


def write_text_atomic(path: Path, text: str, key: str = "output",
                      replace: bool = False) -> Path:
    """Writes ``text`` to ``path`` through :func:`atomic_path`; returns ``path``."""
    with atomic_path(path, key, replace) as temporary:
        temporary.write_text(text)
    return Path(path)


def check_new_folder(folder: str | Path, key: str, what: str) -> Path:
    """``folder`` can be created and is new or empty: a folder of ``what`` (a report) is one,
    whole, never mixed with or written over another's files."""
    folder = writable_folder(folder, key)
    if folder.is_dir() and any(folder.iterdir()):
        entries = sorted(p.name for p in folder.iterdir())
        raise UserError(f"{key}: '{folder}' is not empty ({len(entries)} entries, e.g. "
                        f"'{entries[0]}'); a {what} goes into a new or empty folder, so that "
                        f"nothing in it is overwritten or mixed with another: choose another "
                        f"{key}")
    return folder


@contextlib.contextmanager
def staged_folder(folder: str | Path, key: str, what: str) -> Iterator[Path]:
    """Yields a new hidden folder beside ``folder`` (checked by :func:`check_new_folder`) to
    write ``what`` into; renamed to ``folder`` when the block ends without an exception,
    otherwise removed. An ``OSError`` while writing (a full disk) becomes one line naming the
    file and ``key``; nothing is left under ``folder``."""
    folder = check_new_folder(folder, key, what)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = folder.with_name(f".{folder.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.partial")
    staging.mkdir()
    try:
        yield staging
        if folder.is_dir():
            folder.rmdir()  # empty (checked); fails if something appeared meanwhile
        os.rename(staging, folder)
    except OSError as error:
        name = str(error.filename or "").replace(str(staging), str(folder))
        raise UserError(f"{key}: writing the {what} failed ({error.strerror or error}"
                        f"{': ' + name if name else ''}); nothing was left in '{folder}': free "
                        f"space or choose another {key}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
