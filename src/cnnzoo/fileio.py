"""One way to write an output file: a temporary file in the target folder, verified, then renamed.

`os.replace` within one folder is atomic on POSIX, so a crash, a full disk (ENOSPC), a file-size limit
(EFBIG under `ulimit -f`, which arrives as SIGXFSZ unless ignored: we ignore it for the write so it
becomes an OSError) or a read-only folder leaves either the previous file or the new one, never half of
one, and the temporary file is removed on every failure. An OS error becomes a `CnnzooError` that the
CLI prints as `cnnzoo: error: cannot write PATH: REASON` (exit 2).

The new file gets the permissions of an ordinary `open(path, "w")` (0666 minus the umask): `tempfile`'s
0600 would make results unreadable to the rest of a group.
"""
from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from .errors import CnnzooError


class WriteError(CnnzooError):
    """An output that could not be written; the previous file, if any, is intact."""


def _umask_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def write_error(path: str | os.PathLike, exc: OSError) -> WriteError:
    reason = exc.strerror or str(exc)
    return WriteError(f"cannot write {path}: {reason}")


def disk_error(exc: BaseException) -> OSError | None:
    """The OSError behind `exc`, if any: torch.save reports a full disk as a RuntimeError raised while handling
    the OSError ("unexpected pos ..."), which should read as the disk's error, not as a traceback."""
    if isinstance(exc, OSError):
        return exc
    behind = exc.__cause__ or exc.__context__
    return behind if isinstance(exc, RuntimeError) and isinstance(behind, OSError) else None


def make_folder(folder: str | os.PathLike) -> Path:
    """`mkdir -p` with an OSError (a file in the way, read-only, /proc) turned into one clear line."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise WriteError(f"cannot write {folder}: a file of that name is in the way (a folder is needed)") from None
    except OSError as exc:
        raise write_error(folder, exc) from None
    if not folder.is_dir():
        raise WriteError(f"cannot write {folder}: not a folder")
    return folder


@contextlib.contextmanager
def _no_sigxfsz() -> Iterator[None]:
    """Past `ulimit -f` the kernel sends SIGXFSZ (default: kill, core); ignored, the write fails with EFBIG."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGXFSZ"):
        yield
        return
    old = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGXFSZ, old)


def fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable (the folder's entry, not only the file's bytes)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # some systems do not open folders; the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], Any], *,
                 verify: Callable[[Path], None] | None = None, mkdir: bool = True) -> Path:
    """Call `write(f)` on a temporary file next to `path`, then `verify(tmp)` (raise to refuse), then rename.

    `write` gets a binary file object; `verify` (optional) reads the finished temporary file back. The
    temporary file is removed whatever goes wrong, and `path` keeps its previous content.
    """
    path = Path(path)
    if mkdir:
        make_folder(path.parent)
    if path.is_dir():
        raise WriteError(f"cannot write {path}: it is a folder")
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    try:
        with _no_sigxfsz():
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, _umask_mode())
            with os.fdopen(fd, "wb") as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
            if verify is not None:
                verify(tmp)
            os.replace(tmp, path)
    except BaseException as exc:
        _remove(tmp)
        if (why := disk_error(exc)) is not None:
            raise write_error(path, why) from None
        raise
    fsync_dir(path.parent)
    return path


def _remove(tmp: Path) -> None:
    try:
        tmp.unlink(missing_ok=True)
    except OSError:
        pass


def write_bytes(path: str | os.PathLike, data: bytes, **kw: Any) -> Path:
    return atomic_write(path, lambda f: f.write(data), **kw)


def write_text(path: str | os.PathLike, text: str, **kw: Any) -> Path:
    return write_bytes(path, text.encode("utf-8"), **kw)


def write_figure(fig: Any, path: str | os.PathLike, **savefig: Any) -> Path:
    """A matplotlib figure saved atomically; the format follows the suffix, as with `fig.savefig(path)`."""
    fmt = Path(path).suffix.lstrip(".") or "png"
    return atomic_write(path, lambda f: fig.savefig(f, format=fmt, **savefig))
