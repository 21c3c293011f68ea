"""Where reco keeps files it creates on its own (weights imported offline, caches), and how it
writes: atomically, under a lock, never over a file it did not write unless told to."""

from __future__ import annotations

import contextlib
import errno
import json
import os
from pathlib import Path

from .errors import BusyError, InvalidInputError, OutputWriteError


def cache_dir() -> Path:
    """reco's cache folder: ``$RECO_CACHE_DIR``, else ``$XDG_CACHE_HOME/reco``, else ``~/.cache/reco``."""
    if os.environ.get("RECO_CACHE_DIR"):
        return Path(os.environ["RECO_CACHE_DIR"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "reco"


def weights_cache_dir(model_name: str) -> Path:
    """The folder where weights for ``model_name`` may be placed by hand or by an importer."""
    return cache_dir() / "weights" / model_name


def output_folder(path: str | Path) -> Path:
    """``path`` as a folder to write into, created if missing; a file there is an error."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InvalidInputError(f"{path} is a file, not a folder to write into")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise InvalidInputError(f"{path}: {parent} is a file, not a folder")
            break
    path.mkdir(parents=True, exist_ok=True)
    return path


#: errno values that mean "this output cannot be written here" (not a bug, not bad input).
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG})


def write_failure(error: OSError, target: str | Path):
    """The one-line :class:`~reco.core.errors.OutputWriteError` for ``error`` met writing
    ``target``, or None when ``error`` is not about the output's place (disk, permissions)."""
    if error.errno not in WRITE_ERRNOS:
        return None
    return OutputWriteError(f"cannot write {target}: {error.strerror or os.strerror(error.errno)}; free space or "
                            "choose a writable folder, then run the same command again (finished work is kept)")


def check_writable(folder: str | Path) -> Path:
    """``folder`` created if missing and proven writable by writing and removing a small file
    there, before any work whose result would go there."""
    folder = output_folder(folder)
    probe = folder / f".reco-write-check-{os.getpid()}"
    atomic_write_bytes(probe, b"reco")
    probe.unlink()
    return folder


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename (a folder at ``path``,
    or a file where its folder should be, is an InvalidInputError)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


@contextlib.contextmanager
def atomic_path(path: str | Path):
    """A temporary path beside ``path`` to write to (e.g. by a library that takes a file name);
    renamed to ``path`` when the block ends without an exception, removed otherwise. A full
    disk or a folder that cannot be written is one :class:`~reco.core.errors.OutputWriteError`."""
    path = Path(path)
    if path.is_dir():
        raise InvalidInputError(f"{path} is a folder: give a file name to write")
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        output_folder(path.parent)
        yield tmp
        os.replace(tmp, path)
    except OSError as e:
        failure = write_failure(e, path)
        if failure is None:
            raise
        raise failure from None
    finally:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:  # a folder that cannot be written holds no temporary file
            pass


@contextlib.contextmanager
def exclusive(path: str | Path, *, folder: bool = True, what: str = "writing"):
    """Hold a lock while writing ``path``: a folder (created if missing) is locked by its own
    ``.reco.lock``, a file (a bank) by ``.<name>.lock`` beside it, removed again (while still
    held) when this process made it. A second reco process is refused at once with one line
    instead of racing this one."""
    from filelock import FileLock, Timeout

    path = Path(path)
    lock_path = output_folder(path) / ".reco.lock" if folder else path.with_name(f".{path.name}.lock")
    if not folder:
        output_folder(lock_path.parent)
    made = not folder and not lock_path.exists()
    lock = FileLock(str(lock_path), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise BusyError(f"another reco process is {what} {path} (it holds {lock_path}); wait for it to "
                        "finish") from None
    except OSError as e:
        failure = write_failure(e, lock_path.parent)
        if failure is None:
            raise
        raise failure from None
    try:
        yield path
    finally:
        if made:  # nothing beside a user's file outlives the command
            lock_path.unlink(missing_ok=True)
        lock.release()


def refuse_to_replace(path: str | Path, overwrite: bool, alternative: str = "") -> None:
    """One-line error when ``path`` exists and ``overwrite`` is off: reco never replaces a file
    without being told to. ``alternative``: another way out to name (e.g. "--append to add to it")."""
    if Path(path).exists() and not overwrite:
        hint = f"pass {alternative} or --overwrite to replace it" if alternative else "pass --overwrite to replace it"
        raise InvalidInputError(f"{path} exists: reco does not replace it unless told to; {hint}")


class OutputLedger:
    """The top-level entries that one reco command wrote into an output folder, listed in a
    hidden JSON file there. An entry is claimed *before* it is written, so a killed run leaves
    nothing a rerun would take for a stranger's file."""

    def __init__(self, folder: str | Path, command: str):
        self.folder, self.command = Path(folder), command
        self.path = self.folder / f".reco-{command}.json"
        self.entries: list[str] = json.loads(self.path.read_text()) if self.path.is_file() else []

    def check(self, overwrite: bool) -> None:
        """Refuse (one line) a folder holding entries this command did not write, unless ``overwrite``."""
        if not self.folder.is_dir() or overwrite:
            return
        foreign = sorted(p.name for p in self.folder.iterdir() if p.name not in self.entries and p != self.path)
        if foreign:
            raise InvalidInputError(f"{self.folder} holds files `reco {self.command}` did not write ({', '.join(foreign[:3])}"
                                    f"{', ...' if len(foreign) > 3 else ''}): choose a new folder, or pass --overwrite")

    def claim(self, path: str | Path) -> Path:
        """Record ``path`` (an entry of the folder) as this command's, then return it for writing."""
        path = Path(path)
        if path.name not in self.entries:
            self.entries.append(path.name)
            atomic_write_bytes(self.path, json.dumps(self.entries).encode())
        return path


def with_utf8_names(paths, skipped: list | None = None):
    """The paths of ``paths`` whose names are valid UTF-8 (a name of other bytes cannot be written
    into a manifest, an index or a message): each other one is skipped, with a line on stderr, or
    as (its name shown with escapes, reason) appended to ``skipped`` when given (for the caller to report and count)."""
    import sys

    kept = []
    for path in paths:
        try:
            str(path).encode("utf-8")
        except UnicodeEncodeError:
            reason = "its name is not valid UTF-8 (rename it)"
            shown = str(path).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
            if skipped is not None:
                skipped.append((shown, reason))
            else:
                print(f"skipped {shown}: {reason}", file=sys.stderr)
            continue
        kept.append(path)
    return kept
