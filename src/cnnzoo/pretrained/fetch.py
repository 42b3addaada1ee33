"""Downloading weights like a careful package manager.

- Into torch.hub's cache (`$TORCH_HOME/hub/checkpoints`; `CNNZOO_CACHE` moves it), where torchvision looks too.
- From `CNNZOO_WEIGHTS_MIRROR/<file name>` when that is set (a mirror, a firewall's proxy, the tests' local server),
  else from the origin; the checksums are the same either way.
- With a connect and a read timeout (`CNNZOO_WEIGHTS_TIMEOUT=CONNECT[,READ]` seconds, default 15,60: an unreachable
  host fails fast, a slow mirror may pause longer between chunks) and a progress bar on a terminal
  (`CNNZOO_PROGRESS=1` asks for one elsewhere, e.g. in a CI log; `0` turns it off).
- Into a temporary file beside the target, checked (the SHA-256 prefix torch.hub checks, or a full SHA-1) before it
  is renamed into place; removed on every failure, Ctrl-C included. A zip (pytorchcv's) is read member by member:
  only the expected `.pth` member, no path with `..` or a root, at most `MAX_BYTES`; nothing is extracted to paths.
- A cached file is checked before use too. The digest is remembered with the file's size and modification time in
  `.cnnzoo-verified.json` in the cache, so a second load does not hash 100 MB again; a changed file is re-hashed.
- Offline: one line that names the URL and the exact path where a file fetched by hand must go.
"""
from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import socket
import sys
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path
from typing import Callable

from ..errors import CnnzooError

CACHE_ENV, MIRROR_ENV, TIMEOUT_ENV = "CNNZOO_CACHE", "CNNZOO_WEIGHTS_MIRROR", "CNNZOO_WEIGHTS_TIMEOUT"
PROGRESS_ENV = "CNNZOO_PROGRESS"
MAX_BYTES = 4 << 30  # no published weight file of the lecture's models is near 4 GB (VGG-19: 548 MB)
STAMPS = ".cnnzoo-verified.json"
CHUNK = 1 << 20

Log = Callable[[str], None]


def cache_dir(cache: str | os.PathLike | None = None) -> Path:
    """`cache`, else $CNNZOO_CACHE, else torch.hub's `<hub dir>/checkpoints` ($TORCH_HOME/hub/checkpoints)."""
    if cache is not None:
        return Path(cache).expanduser()
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    # torch.hub.get_dir()'s rule, without importing torch: $TORCH_HOME, else $XDG_CACHE_HOME/torch, else ~/.cache/torch
    home = os.environ.get("TORCH_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "torch")
    return Path(home).expanduser() / "hub" / "checkpoints"


def source_url(url: str) -> str:
    """The URL to fetch: the mirror's copy of the same file name when CNNZOO_WEIGHTS_MIRROR is set (an http(s)://
    server, or a file:// folder on a machine without a network)."""
    mirror = os.environ.get(MIRROR_ENV, "").strip()
    if not mirror:
        return url
    try:
        scheme, host = urllib.parse.urlsplit(mirror)[:2]
    except ValueError:
        scheme, host = "", ""
    if scheme not in ("http", "https", "file") or (scheme != "file" and not host):
        raise CnnzooError(f"{MIRROR_ENV}={mirror!r} is not a mirror URL: give https://HOST/FOLDER (or file:///FOLDER) "
                          f"that serves the weights' file names")
    return mirror.rstrip("/") + "/" + os.path.basename(urllib.parse.urlparse(url).path)


class Check:
    """What a file's bytes must hash to: a SHA-256 prefix (torch.hub's file-name convention) or a full SHA-1."""

    def __init__(self, sha256: str | None = None, sha1: str | None = None):
        self.algorithm, self.expected = ("sha1", sha1.lower()) if sha1 else ("sha256", (sha256 or "").lower())

    def new(self):
        return hashlib.new(self.algorithm)

    def ok(self, digest: str) -> bool:
        """True when the digest matches; a file with no checksum at all (a plain URL) is taken as it is."""
        return digest.startswith(self.expected)

    @property
    def name(self) -> str:
        return {"sha1": "SHA-1", "sha256": "SHA-256"}[self.algorithm]

    def __str__(self) -> str:
        return f"{self.name} {self.expected}" + ("..." if self.algorithm == "sha256" else "")


def fetch(url: str, file: str, check: Check, *, cache: str | os.PathLike | None = None,
          log: Log | None = None) -> Path:
    """The verified cached copy of `file`, downloaded from `url` (a `.zip` holding `file`, or `file` itself) if absent."""
    log = log or log_to_stderr
    folder = cache_dir(cache)
    target = folder / file
    if target.is_file():
        if verified(target, check):
            return target
        log(f"{target} does not match its {check}; downloading it again")
        target.unlink()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CnnzooError(f"cannot create the weights cache {folder}: {exc.strerror or exc}") from None
    where = source_url(url)
    log(f"downloading {where} to {target}")
    part = folder / f".{file}.part-{os.getpid()}"
    zpart = folder / f".{file}.zip-{os.getpid()}"
    try:
        if urllib.parse.urlparse(where).path.endswith(".zip"):
            _download(where, zpart, target)
            _unzip_member(zpart, file, part)
        else:
            _download(where, part, target)
        digest = file_digest(part, check)
        if not check.ok(digest):
            raise CnnzooError(f"{where}: {check.name} {digest[:16]}... does not start with {check.expected}, so the "
                              f"download is corrupt or not the file named; nothing was cached")
        os.replace(part, target)
        _remember(target, digest)
        return target
    finally:
        for p in (part, zpart):
            with contextlib.suppress(OSError):
                p.unlink()


def _download(url: str, part: Path, target: Path) -> None:
    connect, read = _timeouts()
    waited = connect  # the response's headers are read under the connect timeout, its body under the read timeout
    request = urllib.request.Request(url, headers={"User-Agent": "cnnzoo"})
    by_hand = f"put it at {target}" if not url.endswith(".zip") else f"put the {target.name} it holds at {target}"
    try:
        with urllib.request.urlopen(request, timeout=connect) as response, open(part, "wb") as out:
            _read_timeout(response, read)
            waited = read
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            if total is not None and total > MAX_BYTES:
                raise CnnzooError(f"{url} is {total / 2**30:.1f} GB, over the {MAX_BYTES >> 30} GB limit for weights")
            done = 0
            with _progress(total, target.name) as bar:
                while chunk := response.read(CHUNK):
                    done += len(chunk)
                    if done > MAX_BYTES:
                        raise CnnzooError(f"{url} sent over {MAX_BYTES >> 30} GB; stopped")
                    out.write(chunk)
                    bar.update(len(chunk))
            if total is not None and done < total:
                raise CnnzooError(f"{url}: the download stopped after {done:,} of {total:,} bytes; nothing was cached")
    except urllib.error.HTTPError as exc:
        raise CnnzooError(f"could not download {url}: HTTP {exc.code} {exc.reason}") from None
    except (socket.timeout, TimeoutError):
        raise CnnzooError(f"could not download {url}: no answer within {waited:g} s "
                          f"(set {TIMEOUT_ENV} to wait longer); nothing was cached") from None
    except urllib.error.URLError as exc:
        reason = exc.reason if not isinstance(exc.reason, OSError) else (exc.reason.strerror or exc.reason)
        raise CnnzooError(f"could not download {url} ({reason}); offline? fetch it by hand and {by_hand}, "
                          f"or set {MIRROR_ENV} to a folder URL that has it") from None
    except http.client.HTTPException as exc:  # a broken chunked body, a garbled status line
        raise CnnzooError(f"could not download {url}: the server broke off ({type(exc).__name__}); "
                          f"nothing was cached") from None
    except OSError as exc:
        raise CnnzooError(f"could not download {url} to {part.parent}: {exc.strerror or exc}") from None


def _unzip_member(zpath: Path, name: str, part: Path) -> None:
    """Copy the zip's one member `name` into `part`, member by member, refusing anything else it might hold."""
    try:
        with zipfile.ZipFile(zpath) as z:
            members = z.infolist()
            bad = [m.filename for m in members if m.filename.startswith(("/", "\\")) or ".." in Path(m.filename).parts]
            if bad:
                raise CnnzooError(f"{zpath.name[1:].rsplit('-', 1)[0]}: the zip holds a path outside its folder "
                                  f"({bad[0]!r}); refused, nothing was cached")
            member = next((m for m in members if m.filename == name), None)
            if member is None:
                names = ", ".join(m.filename for m in members[:3]) or "nothing"
                raise CnnzooError(f"the downloaded zip does not hold {name} (it holds {names}); nothing was cached")
            if member.file_size > MAX_BYTES:
                raise CnnzooError(f"{name} in the zip is {member.file_size / 2**30:.1f} GB, over the "
                                  f"{MAX_BYTES >> 30} GB limit for weights; refused, nothing was cached")
            with z.open(member) as src, open(part, "wb") as out:
                done = 0
                while chunk := src.read(CHUNK):
                    done += len(chunk)
                    if done > member.file_size or done > MAX_BYTES:  # a header that lies about the size
                        raise CnnzooError(f"{name} in the zip is larger than its header says; refused")
                    out.write(chunk)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as exc:
        raise CnnzooError(f"the download of {name} is not a readable zip ({exc}); nothing was cached") from None


def file_digest(path: Path, check: Check) -> str:
    """The hex digest of a file with `check`'s algorithm."""
    h = check.new()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK * 4):
            h.update(chunk)
    return h.hexdigest()


def _stamp_key(path: Path) -> list:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


def _stamps(folder: Path) -> dict:
    try:
        return json.loads((folder / STAMPS).read_text())
    except (OSError, ValueError):
        return {}


def verified(path: Path, check: Check) -> bool:
    """Whether the cached file hashes to `check`; the digest of an unchanged file is read from the stamps."""
    stamp = _stamps(path.parent).get(path.name)
    if stamp and stamp[:2] == _stamp_key(path) and stamp[2] == check.algorithm:
        return check.ok(stamp[3])
    digest = file_digest(path, check)
    if check.ok(digest):
        _remember(path, digest, check.algorithm)
        return True
    return False


def _remember(path: Path, digest: str, algorithm: str | None = None) -> None:
    """Record a verified file's digest; a cache we cannot write to only costs a re-hash next time."""
    algorithm = algorithm or {40: "sha1", 64: "sha256"}[len(digest)]
    stamps = _stamps(path.parent)
    stamps[path.name] = [*_stamp_key(path), algorithm, digest]
    tmp = path.parent / f".{STAMPS}.tmp-{os.getpid()}"
    try:
        tmp.write_text(json.dumps(stamps))
        os.replace(tmp, path.parent / STAMPS)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()


def _timeouts() -> tuple[float, float]:
    """(connect, read) seconds from $CNNZOO_WEIGHTS_TIMEOUT: "CONNECT,READ", or one number for both."""
    text = os.environ.get(TIMEOUT_ENV, "15,60")
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) not in (1, 2) or not all(0 < v < float("inf") for v in values):
        raise CnnzooError(f"{TIMEOUT_ENV}={text!r} must be seconds > 0: CONNECT,READ (e.g. 15,60) or one number")
    return values[0], values[-1]


def _read_timeout(response, seconds: float) -> None:
    """urlopen's timeout is the connect timeout; the body's reads get their own (on the response's socket)."""
    sock = getattr(getattr(getattr(response, "fp", None), "raw", None), "_sock", None)
    if sock is not None:
        sock.settimeout(seconds)


@contextlib.contextmanager
def _progress(total: int | None, name: str):
    asked = os.environ.get(PROGRESS_ENV, "").strip().lower()
    if not (asked in ("1", "true", "yes", "on") or (sys.stderr.isatty() and asked not in ("0", "false", "no", "off"))):
        yield _Silent()
        return
    from tqdm import tqdm

    with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=name, file=sys.stderr) as bar:
        yield bar


class _Silent:
    def update(self, n: int) -> None:
        pass


def log_to_stderr(message: str) -> None:
    """The default log of weights loading: a `cnnzoo: ...` line on standard error."""
    print(f"cnnzoo: {message}", file=sys.stderr)
