"""Backups of a PostgreSQL schema: ``pg_dump --format=custom --schema=<schema>``.

``pg_dump`` reads one snapshot (a repeatable-read transaction of its own), so the copy
is consistent while every node keeps committing. The dump is written to a temporary
file beside ``target``, fsynced, then renamed over it (``store.shared.backup``):
``target`` is the old file or the whole new dump, never a part. The password of the
URL goes to ``pg_dump`` in its environment (``PGPASSWORD``), never on its command
line, and the URL's ``search_path`` (a setting asyncpg sends, unknown to libpq) is
left out: ``--schema`` names what is dumped.

Restoring is ``pg_restore`` (``pg_restore --list`` reads the file; ``pg_restore
--dbname=<url> --clean --if-exists <file>`` puts the schema back), an operator's step
with the runtimes stopped: ``shepherd restore`` refuses a PostgreSQL database and
names that command.

``pg_dump`` must be on ``PATH`` and at least as new as the server; when it is
missing or fails, the ``StoreError`` says so (with what ``pg_dump`` printed).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import anyio

from shepherd.store.activity import THREAD_WORK
from shepherd.store.errors import StoreError, os_error
from shepherd.store.postgres.opening import redact
from shepherd.store.shared.backup import Progress, fsync_and_rename, temp_beside, writable_target

__all__ = ["dump_to", "libpq_url", "restore_command"]

# the connection parameters libpq (so pg_dump) takes in a URL's query; the others are
# server settings asyncpg sends (search_path, ...), not needed to dump a named schema
_LIBPQ = frozenset(
    {
        "host", "hostaddr", "port", "dbname", "user", "password", "passfile",
        "channel_binding", "connect_timeout", "client_encoding", "options",
        "application_name", "fallback_application_name", "keepalives",
        "keepalives_idle", "keepalives_interval", "keepalives_count", "tcp_user_timeout",
        "sslmode", "sslcompression", "sslcert", "sslkey", "sslpassword", "sslrootcert",
        "sslcrl", "sslcrldir", "sslsni", "requirepeer", "ssl_min_protocol_version",
        "ssl_max_protocol_version", "gssencmode", "krbsrvname", "gsslib", "service",
        "target_session_attrs", "load_balance_hosts",
    }
)  # fmt: skip


def libpq_url(dsn: str) -> tuple[str, str | None]:
    """``dsn`` as libpq reads it (no password, only libpq's query parameters) and its
    password (None: none in the URL)."""
    parts = urlsplit(dsn)
    password = None if parts.password is None else unquote(parts.password)
    netloc = parts.netloc.rpartition("@")
    host = netloc[2]
    if netloc[1]:
        user = netloc[0].partition(":")[0]
        host = f"{user}@{host}" if user else host
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k in _LIBPQ]
    password = password or next((v for k, v in query if k == "password"), None)
    query = [(k, v) for k, v in query if k != "password"]
    return urlunsplit(("postgresql", host, parts.path, urlencode(query), "")), password


def restore_command(dsn: str, backup: str) -> str:
    """The command that restores ``backup`` (a ``pg_dump`` custom-format file) into the
    database ``dsn`` names (its password left out)."""
    url, _ = libpq_url(dsn)
    return f"pg_restore --dbname='{url}' --clean --if-exists --no-owner '{backup}'"


def _pattern(schema: str) -> str:
    """``schema`` as an exact pg_dump pattern (quoted: no case folding, no wildcards)."""
    return '"' + schema.replace('"', '""') + '"'


async def dump_to(dsn: str, schema: str, target: str, *, progress: Progress | None = None) -> int:
    """Dump ``schema`` of the database ``dsn`` to ``target`` (atomically); its size in
    bytes. ``progress(done, total)`` is called when the dump is in place."""
    pg_dump = shutil.which("pg_dump")
    if pg_dump is None:
        raise StoreError(
            f"{target}: cannot back up {redact(dsn)}: pg_dump is not on PATH (install the"
            " PostgreSQL client tools, as new as the server)"
        )
    parent = writable_target(target)
    tmp = temp_beside(target)
    url, password = libpq_url(dsn)
    env = dict(os.environ)
    if password is not None:
        env["PGPASSWORD"] = password
    argv = [
        pg_dump, "--format=custom", f"--schema={_pattern(schema)}",
        f"--file={tmp}", f"--dbname={url}",
    ]  # fmt: skip
    THREAD_WORK.begin()  # a fake clock waits for the dump as for a thread hop
    try:
        try:
            done = await anyio.run_process(argv, env=env, check=False, stdin=subprocess.DEVNULL)
        except OSError as exc:
            raise os_error(exc, f"{target}: cannot run pg_dump") from None
        if done.returncode != 0:
            why = done.stderr.decode(errors="replace").strip() or f"exit {done.returncode}"
            raise StoreError(f"{target}: pg_dump of {redact(dsn)} failed: {why}")
        try:
            await anyio.to_thread.run_sync(fsync_and_rename, tmp, target, parent)
        except OSError as exc:
            raise os_error(exc, f"{target}: cannot write the backup") from None
    finally:
        THREAD_WORK.end()
        if os.path.exists(tmp):  # noqa: ASYNC240 - one stat after the dump
            os.unlink(tmp)
    size = os.path.getsize(target)  # noqa: ASYNC240 - one stat after the dump
    if progress is not None:
        progress(size, size)
    return size
