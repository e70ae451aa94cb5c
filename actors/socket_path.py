"""Where the runtime serving a database listens: ``<temp dir>/shepherd-<digest>.<kind>``
(``.sock`` the enqueue socket, ``ingest_wire.stream_path``; ``.wake`` the wake socket,
``ingest.wake_path``). The daemon and every CLI call compute it on their own, so both
must always get the same path; a CLI call computes it without the ~4 ms of imports
``hashlib`` (OpenSSL) and ``tempfile`` (``random``, ``weakref``) cost.

- the digest: the first 20 hex digits of the SHA-256 of the database's absolute path,
  from the interpreter's built-in SHA-256 (``_sha2``, before 3.12 ``_sha256``; the same
  digest ``hashlib.sha256`` gives), else ``hashlib``'s;
- the directory: ``tempfile.gettempdir()``'s (a unix socket path is at most 107 bytes).
  Once ``tempfile`` is loaded (it caches its answer, and ``tempfile.tempdir`` may have
  been set), its answer; before, its search, step for step (CPython 3.11 to 3.13): the
  first of ``$TMPDIR``, ``$TEMP``, ``$TMP`` (the non-empty ones), ``/tmp``,
  ``/var/tmp``, ``/usr/tmp`` and the working directory, each made absolute, where a
  new file can be created (``O_EXCL | O_NOFOLLOW``, mode 0600), written and removed.
"""

from __future__ import annotations

import errno
import importlib
import os
import sys
from collections.abc import Callable
from typing import Any

__all__ = ["runtime_path", "temp_dir"]

_FLAGS = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
_FLAGS |= getattr(os, "O_BINARY", 0)


def runtime_path(db_path: str, kind: str) -> str:
    digest = _sha256()(os.path.abspath(db_path).encode()).hexdigest()[:20]
    return os.path.join(temp_dir(), f"shepherd-{digest}.{kind}")


def _sha256() -> Callable[[bytes], Any]:
    for name in ("_sha2", "_sha256"):
        try:
            sha256: Callable[[bytes], Any] = importlib.import_module(name).sha256
            return sha256
        except ImportError:  # not built in (3.11 has _sha256, 3.12 on _sha2)
            continue
    import hashlib

    return hashlib.sha256


def temp_dir() -> str:
    """``tempfile.gettempdir()``, without importing ``tempfile`` when it is not loaded."""
    tempfile = sys.modules.get("tempfile")
    if tempfile is None and os.name == "nt":  # its Windows candidates are not copied here
        import tempfile
    if tempfile is not None:
        return str(tempfile.gettempdir())
    return _search()


def _candidates() -> list[str]:
    dirs = [d for d in (os.getenv(n) for n in ("TMPDIR", "TEMP", "TMP")) if d]
    dirs += ["/tmp", "/var/tmp", "/usr/tmp"]  # tempfile's own list
    try:
        dirs.append(os.getcwd())
    except (AttributeError, OSError):
        dirs.append(os.curdir)
    return dirs


def _search() -> str:
    dirs = _candidates()
    for d in dirs:
        if d != os.curdir:
            d = os.path.abspath(d)
        for _ in range(100):  # tries a few names per directory, as tempfile does
            path = os.path.join(d, f"tmp{os.urandom(6).hex()}")
            try:
                fd = os.open(path, _FLAGS, 0o600)
                try:
                    try:
                        os.write(fd, b"blat")
                    finally:
                        os.close(fd)
                finally:
                    os.unlink(path)
                return d
            except FileExistsError:
                pass
            except OSError:  # PermissionError too: tempfile retries it on Windows only
                break
    raise FileNotFoundError(errno.ENOENT, f"No usable temporary directory found in {dirs}")
