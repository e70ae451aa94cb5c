"""Where the runtime serving a database listens: ``<temp dir>/shepherd-<digest>.<kind>``
(``.sock`` the enqueue socket, ``ingest_wire.stream_path``; ``.wake`` the wake socket,
``wake_path``, and ``send_wake``, re-exported by ``ingest``), and its lock file
(``lock_path``: ``<database>.lock``, ``runtime._lock``). The daemon and every CLI
call compute them on their own, so both must always get the same path; a CLI call
computes it without loading OpenSSL (``hashlib``, ~3 ms).

Both are named after the database's **resolved** path (``resolved``: symlinks, ``..``
and the working directory resolved, as SQLite resolves them for its ``-wal`` and
``-shm``), so every spelling of one file (``alias.db -> real.db``, ``./x/../real.db``)
meets the same lock and the same sockets.

- the digest: the first 20 hex digits of the SHA-256 of the database's resolved path,
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

__all__ = [
    "FILE_LOCK",
    "flock_holder",
    "lock_path",
    "resolved",
    "runtime_path",
    "send_wake",
    "temp_dir",
    "wake_path",
]

# a runtime also flocks the database file itself (Linux: independent of SQLite's fcntl
# locks; ``runtime._lock``), so two hard links of one file meet one lock
FILE_LOCK = sys.platform.startswith("linux")


def resolved(db_path: str) -> str:
    """The file ``db_path`` names, whatever its spelling: absolute, every symlink and
    ``..`` resolved (a path that does not exist yet resolves as far as it exists)."""
    return os.path.realpath(db_path)


def lock_path(db_path: str) -> str:
    """The lock file of the runtime serving ``db_path``: beside the resolved file."""
    return resolved(db_path) + ".lock"


def runtime_path(db_path: str, kind: str) -> str:
    digest = _sha256()(resolved(db_path).encode()).hexdigest()[:20]
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


def flock_holder(path: str) -> int | None:
    """The pid holding an exclusive ``flock`` on the file ``path`` (Linux, from
    ``/proc/locks``: no descriptor opened, no lock probed), or None."""
    if not FILE_LOCK:
        return None
    try:
        st = os.stat(path)
        with open("/proc/locks") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    # "1: FLOCK  ADVISORY  WRITE 1234 fe:00:2173370 0 EOF" (a waiter's line has "->")
    inode = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    for line in lines:
        fields = line.split()
        flock = len(fields) >= 6 and fields[1:4] == ["FLOCK", "ADVISORY", "WRITE"]
        if flock and fields[5] == inode and fields[4].isdigit():
            return int(fields[4])
    return None
