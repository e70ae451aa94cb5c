"""Where the runtime serving a database listens: ``<temp dir>/shepherd-<digest>.<kind>``
(``.sock`` the enqueue socket, ``ingest_wire.stream_path``; ``.wake`` the wake socket,
``wake_path``, and ``send_wake``, re-exported by ``ingest``). The daemon and every CLI
call compute it on their own, so both must always get the same path; a CLI call
computes it without loading OpenSSL (``hashlib``, ~3 ms).

- the digest: the first 20 hex digits of the SHA-256 of the database's absolute path,
  from the interpreter's built-in SHA-256 (``_sha2``, before 3.12 ``_sha256``; the same
  digest ``hashlib.sha256`` gives), else ``hashlib``'s;
- the directory: ``tempfile.gettempdir()``'s (a unix socket path is at most 107 bytes).
  Where ``tempfile`` is not loaded yet, its search is done here without loading it
  (``tempfile`` loads ``shutil``, ``bz2``, ``lzma`` and ``random``: ~0.5 MiB of an idle
  runtime's RSS): ``$TMPDIR``, ``$TEMP``, ``$TMP``, ``/tmp``, ``/var/tmp``, ``/usr/tmp``,
  the working directory, the first a directory this process may write. ``tempfile``
  tries to create a file in each instead; the two differ only on a directory that
  allows writes but cannot take a new file (a full disk), where ``tempfile`` moves on.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from typing import Any

__all__ = ["runtime_path", "send_wake", "temp_dir", "wake_path"]


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
    """``tempfile.gettempdir()``'s directory: its own answer where ``tempfile`` is loaded
    (an application may have set ``tempfile.tempdir``), else the same search without
    loading it (module docstring)."""
    loaded = sys.modules.get("tempfile")
    if loaded is None and os.name == "posix":
        names = ("TMPDIR", "TEMP", "TMP")
        found = [os.environ[n] for n in names if os.environ.get(n)]
        for d in [*found, "/tmp", "/var/tmp", "/usr/tmp", os.curdir]:
            try:
                d = os.path.abspath(d)  # the working directory may be gone: tempfile's
            except OSError:
                break
            if os.path.isdir(d) and os.access(d, os.W_OK | os.X_OK):
                return d
    import tempfile

    return tempfile.gettempdir()


def wake_path(db_path: str) -> str:
    """The wake socket beside the enqueue socket."""
    return runtime_path(db_path, "wake")


def send_wake(db_path: str, what: str = "d") -> bool:
    """Tell the runtime serving ``db_path`` (if any) to look at the store. Never raises."""
    import socket

    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.setblocking(False)
            s.sendto(what.encode(), wake_path(db_path))
        return True
    except OSError:
        return False
