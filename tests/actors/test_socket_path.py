"""The runtime's socket paths (``actors.socket_path``): the daemon and a CLI call must
agree, so the path is the one ``hashlib`` and ``tempfile.gettempdir()`` give, in every
case ``gettempdir`` handles, without importing either. Each check of the directory runs
a fresh interpreter (``tempfile`` caches its answer) with the environment under test."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from shepherd.actors import socket_path
from shepherd.actors.ingest import wake_path
from shepherd.actors.ingest_wire import stream_path

_SCRIPT = """
import json, sys
from shepherd.actors.socket_path import runtime_path, temp_dir
ours, path = temp_dir(), runtime_path("q.db", "sock")
loaded = sorted(m for m in ("tempfile", "hashlib", "_hashlib") if m in sys.modules)
import tempfile
print(json.dumps({"ours": ours, "path": path, "loaded": loaded, "tempfile": tempfile.gettempdir()}))
"""
_VARS = ("TMPDIR", "TEMP", "TMP")


def _both(cwd: Path, **env: str) -> dict[str, object]:
    full = {k: v for k, v in os.environ.items() if k not in _VARS} | env
    proc = subprocess.run(
        [sys.executable, "-c", _SCRIPT], cwd=cwd, env=full, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    got: dict[str, object] = json.loads(proc.stdout)
    assert got["loaded"] == [], got  # neither module was needed
    assert got["ours"] == got["tempfile"], got
    return got


def test_the_digest_is_hashlibs_sha256() -> None:
    for db in ("q.db", "/var/lib/shepherd/jobs.db", "dé/jà vu.db", "../x.db"):
        want = hashlib.sha256(os.path.abspath(db).encode()).hexdigest()[:20]
        assert stream_path(db) == os.path.join(tempfile.gettempdir(), f"shepherd-{want}.sock")
        assert wake_path(db) == os.path.join(tempfile.gettempdir(), f"shepherd-{want}.wake")


def test_with_tempfile_loaded_its_answer_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    assert socket_path.temp_dir() == str(tmp_path)
    assert stream_path("q.db").startswith(f"{tmp_path}/shepherd-")


def test_no_variable_gives_the_system_default(tmp_path: Path) -> None:
    got = _both(tmp_path)
    digest = hashlib.sha256(str(tmp_path / "q.db").encode()).hexdigest()[:20]
    assert got["path"] == os.path.join(str(got["tempfile"]), f"shepherd-{digest}.sock")


@pytest.mark.parametrize("var", _VARS)
def test_each_variable_is_followed(tmp_path: Path, var: str) -> None:
    (tmp_path / "t").mkdir()
    assert _both(tmp_path, **{var: str(tmp_path / "t")})["ours"] == str(tmp_path / "t")


def test_the_variables_in_order_skipping_empty_and_unusable_ones(tmp_path: Path) -> None:
    (tmp_path / "t").mkdir()
    (tmp_path / "file").write_text("")
    got = _both(tmp_path, TMPDIR="", TEMP=str(tmp_path / "missing"), TMP=str(tmp_path / "t"))
    assert got["ours"] == str(tmp_path / "t")
    got = _both(tmp_path, TMPDIR=str(tmp_path / "file"), TEMP=str(tmp_path / "t"))
    assert got["ours"] == str(tmp_path / "t")
    got = _both(tmp_path, TMPDIR=str(tmp_path / "missing"), TMP=str(tmp_path / "file"))
    assert got["ours"] == got["tempfile"]  # /tmp, or what follows it here


def test_relative_and_unnormalized_directories_are_made_absolute(tmp_path: Path) -> None:
    (tmp_path / "t").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "t")
    assert _both(tmp_path, TMPDIR="t")["ours"] == str(tmp_path / "t")
    assert _both(tmp_path, TMPDIR="./t/../t/")["ours"] == str(tmp_path / "t")
    assert _both(tmp_path, TMPDIR=str(tmp_path / "link"))["ours"] == str(tmp_path / "link")
