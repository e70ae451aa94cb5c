"""Reading a ``pg_dump`` backup back in tests: ``restored_elsewhere`` restores it with
``pg_restore`` into a database of its own (created, then dropped), so the copy is
opened beside the original (same schema name, another database)."""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import anyio
import asyncpg

__all__ = ["restored_elsewhere", "toc"]


def toc(dump: str) -> str:
    """``pg_restore --list`` of ``dump``: its table of contents (fails if unreadable)."""
    done = subprocess.run(
        ["pg_restore", "--list", dump], capture_output=True, text=True, check=True
    )
    return done.stdout


@asynccontextmanager
async def restored_elsewhere(url: str, dump: str) -> AsyncIterator[str]:
    """The URL of a new database (on ``url``'s server) holding ``dump`` restored, with
    ``url``'s ``search_path``; the database is dropped when the block ends."""
    parts = urlsplit(url)
    name = f"shepherd_r_{secrets.token_hex(4)}"
    admin = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    conn = await asyncpg.connect(admin)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    try:
        target = urlunsplit((parts.scheme, parts.netloc, f"/{name}", "", ""))
        await anyio.run_process(["pg_restore", "--no-owner", f"--dbname={target}", dump])
        path = dict(parse_qsl(parts.query)).get("search_path", "public")
        yield f"{target}?search_path={path}"
    finally:
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()
