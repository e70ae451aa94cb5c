"""The runtime's socket paths (``actors.socket_path``): the daemon and a CLI call must
agree, so the path is the one ``hashlib``'s SHA-256 and ``tempfile.gettempdir()`` give;
a CLI call computes it without loading OpenSSL (a fresh interpreter, ``sys.modules``)."""

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
from shepherd.actors.socket_path import runtime_path
path = runtime_path("q.db", "sock")
print(json.dumps({"path": path, "openssl": "_hashlib" in sys.modules,
                  "tempfile": "tempfile" in sys.modules}))
"""

_TEMPFILE = """
import tempfile
print(tempfile.gettempdir())
"""


def test_the_digest_is_hashlibs_sha256() -> None:
    for db in ("q.db", "/var/lib/shepherd/jobs.db", "dé/jà vu.db", "../x.db"):
        want = hashlib.sha256(os.path.abspath(db).encode()).hexdigest()[:20]
        assert stream_path(db) == os.path.join(tempfile.gettempdir(), f"shepherd-{want}.sock")
        assert wake_path(db) == os.path.join(tempfile.gettempdir(), f"shepherd-{want}.wake")


def test_the_directory_is_tempfiles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    assert socket_path.temp_dir() == str(tmp_path)
    assert stream_path("q.db").startswith(f"{tmp_path}/shepherd-")


def test_a_fresh_interpreter_gets_the_same_path_without_openssl(tmp_path: Path) -> None:
    (tmp_path / "t").mkdir()
    env = {**os.environ, "TMPDIR": str(tmp_path / "t")}
    proc = subprocess.run(
        [sys.executable, "-c", _SCRIPT], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    digest = hashlib.sha256(str(tmp_path / "q.db").encode()).hexdigest()[:20]
    want = str(tmp_path / "t" / f"shepherd-{digest}.sock")
    assert got == {"path": want, "openssl": False, "tempfile": False}


@pytest.mark.parametrize("tmpdir", ["set", "missing", "unset", "unwritable"])
def test_without_tempfile_the_directory_is_still_tempfiles(tmp_path: Path, tmpdir: str) -> None:
    """The search done without loading ``tempfile`` lands where ``tempfile`` does: its
    variables first, a missing or unwritable one skipped, then ``/tmp``."""
    env = {k: v for k, v in os.environ.items() if k not in ("TMPDIR", "TEMP", "TMP")}
    if tmpdir == "set":
        (tmp_path / "t").mkdir()
        env["TMPDIR"] = str(tmp_path / "t")
    elif tmpdir == "missing":
        env["TMPDIR"] = str(tmp_path / "absent")
        env["TEMP"] = str(tmp_path)
    elif tmpdir == "unwritable":
        (tmp_path / "ro").mkdir(mode=0o500)
        env["TMPDIR"] = str(tmp_path / "ro")
    run = [sys.executable, "-c"]
    ours = subprocess.run([*run, _SCRIPT], cwd=tmp_path, env=env, capture_output=True, text=True)
    theirs = subprocess.run(
        [*run, _TEMPFILE], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert ours.returncode == theirs.returncode == 0, ours.stderr + theirs.stderr
    got = json.loads(ours.stdout)
    assert not got["tempfile"]
    assert os.path.dirname(got["path"]) == theirs.stdout.strip()
