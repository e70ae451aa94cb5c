"""shepherd embedded in an application, as a separate program.

- An application with its own top-level ``store``, ``runtime`` and ``actors`` packages
  imports them and shepherd side by side, opens a ``Runtime`` and runs a job: shepherd
  claims no generic top-level import name.
- mypy on an application that installs shepherd (not editable: the files a wheel
  holds, in a fresh environment's site-packages) sees shepherd's types: ``py.typed``
  ships, and a misused ``JobSpec`` is reported.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
BUILD_PY = ("-q", "build_py", "--build-lib")
MYPY = ("--strict", "--no-incremental")

APP = """
import anyio

import actors.mailbox
import runtime
import store.errors
from shepherd import Config, JobSpec, Runtime


async def hello(ctx):
    return {"app": store.errors.APP_ERRORS, "x": ctx.payload["x"]}


async def main():
    assert runtime.NAME == "the app's runtime" and actors.mailbox.POSTBOX == 1
    async with Runtime.open(Config(database="app.db"), targets={"hello": hello}) as rt:
        await rt.add_job(JobSpec(name="hello", target="hello"))
        final = await rt.wait(await rt.enqueue("hello", {"x": 41}), timeout=30)
        print(final.status, final.result["app"], final.result["x"] + 1)


anyio.run(main)
"""


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "MYPY"))}
    env.update(extra)
    return env


def test_an_app_with_its_own_store_runtime_and_actors_packages_embeds_shepherd(
    tmp_path: Path,
) -> None:
    for package, body in {
        "store": "",
        "runtime": 'NAME = "the app\'s runtime"\n',
        "actors": "",
    }.items():
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text(body)
    (tmp_path / "store" / "errors.py").write_text('APP_ERRORS = "the app\'s store"\n')
    (tmp_path / "actors" / "mailbox.py").write_text("POSTBOX = 1\n")
    (tmp_path / "app.py").write_text(APP)
    proc = subprocess.run(
        [sys.executable, "app.py"],
        cwd=tmp_path,
        env=_clean_env(PYTHONPATH=str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["done", "the", "app's", "store", "42"]


def test_mypy_on_an_embedding_app_sees_shepherds_types(tmp_path: Path) -> None:
    # a copy of the project, installed as a user would (not editable) into a fresh venv
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for package in ("actors", "runtime", "store"):
        shutil.copytree(ROOT / package, src / package, ignore=shutil.ignore_patterns("__pycache__"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # the files a wheel installs: setuptools' build_py, driven by pyproject.toml (the
    # package-dir mapping and package data), straight into the venv's site-packages
    install = subprocess.run(
        [sys.executable, "-c", "import setuptools; setuptools.setup()", *BUILD_PY, site],
        cwd=src,
        capture_output=True,
        text=True,
        timeout=120,
        env=_clean_env(),
    )
    assert install.returncode == 0, install.stderr
    assert (Path(site) / "shepherd" / "py.typed").is_file()
    assert not (Path(site) / "store").exists() and not (Path(site) / "runtime").exists()
    # shepherd's own dependencies (msgspec, anyio, ...) from this environment
    (Path(site) / "_deps.pth").write_text(sysconfig.get_path("purelib") + "\n")

    app = tmp_path / "app"
    app.mkdir()
    (app / "app.py").write_text(
        textwrap.dedent(
            """
            from shepherd import JobSpec, Runtime

            spec = JobSpec(name=1)
            good: str = JobSpec(name="ok").name
            opener = Runtime.open
            """
        )
    )
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", *MYPY, "--python-executable", str(python), "app.py"],
        cwd=app,
        capture_output=True,
        text=True,
        timeout=120,
        env=_clean_env(),
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert 'Argument "name" to "JobSpec" has incompatible type "int"; expected "str"' in out
    assert "py.typed" not in out and "import-untyped" not in out and "import-not-found" not in out
    assert "Found 1 error in 1 file" in out, out
