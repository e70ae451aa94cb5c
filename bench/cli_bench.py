"""The CLI's start: wall time of ``shepherd enqueue`` and ``shepherd status`` beside the
interpreter's own start (issue 17, item 4: "import only what a command needs").

Each figure is the wall time of one whole process (``subprocess.run``, timed with
``time.perf_counter()``), the median of ``RUNS`` (``--quick``: ``QUICK_RUNS``) after
``WARMUP`` runs that are not counted; the note gives min, p90 and max. Commands:

- ``floor``: ``python -c pass`` with the interpreter the bench runs on;
- ``enqueue.socket``: ``shepherd enqueue J --delay 1h`` while ``shepherd run`` serves
  the database (the request goes over its enqueue socket, the id comes back committed);
- ``enqueue.direct``: the same with no daemon (the CLI writes the file itself);
- ``status.daemon`` / ``status.alone``: ``shepherd status`` with / without the daemon;
- each again with ``.jobs5``: a config file declaring 5 ``[[jobs]]`` (every command
  validates them as ``run`` would), J being one of them.

``shepherd`` is the console script installed beside ``sys.executable`` (what a user
runs), else ``python -m shepherd``. ``PYTHONDONTWRITEBYTECODE`` is removed from the
children's environment: with it set no ``.pyc`` is cached and every import compiles
its module again, which a ``pip install`` never does (it doubles the CLI's time); the
warm-up runs write the caches. ``--delay 1h`` keeps the daemon idle while it is timed
(no run starts). Goals: enqueue <= 80 ms, status <= 120 ms on a 2-core machine.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.context import BenchContext
from bench.report import Result, stop_process

SCENARIO = "cli"
RUNS = 15
QUICK_RUNS = 5
WARMUP = 2
GOALS = {"enqueue": 80.0, "status": 120.0}
_JOBS = 5


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.pop("SHEPHERD_DATABASE", None)  # the config file names the database
    return env


def _shepherd() -> list[str]:
    script = Path(sys.executable).with_name("shepherd")
    return [str(script)] if script.exists() else [sys.executable, "-m", "shepherd"]


def _config(d: Path, name: str, jobs: int) -> Path:
    text = f'database = "{name}.db"\nshutdown_grace = "1s"\n'
    for i in range(jobs):
        text += (
            f'\n[[jobs]]\nname = "j{i}"\nexecutor = "shell"\ntarget = "true"\n'
            f'cron = "{i} 3 * * *"\ntimeout = "5m"\n[jobs.retry]\nmax_attempts = 3\n'
        )
    path = d / f"{name}.toml"
    path.write_text(text)
    return path


def _time(argv: list[str], cwd: Path, runs: int) -> list[float]:
    """Wall ms of ``runs`` runs of ``argv`` after ``WARMUP`` uncounted ones."""
    env = _env()
    out: list[float] = []
    for i in range(WARMUP + runs):
        began = time.perf_counter()
        proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
        took = (time.perf_counter() - began) * 1000
        if proc.returncode != 0:
            raise RuntimeError(f"{argv} exited {proc.returncode}: {proc.stderr[-2000:]}")
        if i >= WARMUP:
            out.append(took)
    return out


class _Daemon:
    """``shepherd run`` on the config's database until its enqueue socket answers."""

    def __init__(self, config: Path, db: Path, stall: float) -> None:
        self.config, self.db, self.stall = config, db, stall
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> _Daemon:
        from shepherd.runtime.producer import Producer

        log = self.db.with_suffix(".log").open("wb")
        argv = [*_shepherd(), "--config", str(self.config), "run"]
        self._proc = subprocess.Popen(argv, cwd=self.db.parent, env=_env(), stdout=log, stderr=log)
        deadline = time.monotonic() + self.stall
        while True:
            with Producer(self.db) as p:
                if p.connected():
                    return self
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.__exit__()
                log_text = self.db.with_suffix(".log").read_text()[-2000:]
                raise RuntimeError(f"the daemon did not answer: {log_text}")
            time.sleep(0.05)

    def __exit__(self, *exc: object) -> None:
        assert self._proc is not None
        stop_process(self._proc, 30)


def _result(metric: str, samples: list[float], what: str) -> Result:
    ordered = sorted(samples)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    goal = GOALS.get(metric.split(".")[0])
    note = f"{what}; median of {len(samples)} after {WARMUP} warm-ups"
    note += f", min {ordered[0]:.1f} / p90 {p90:.1f} / max {ordered[-1]:.1f} ms"
    if goal is not None:
        note += f"; goal <= {goal:g} ms"
    return Result(
        scenario=SCENARIO,
        metric=metric,
        value=statistics.median(samples),
        unit="ms",
        ratio_to=None if metric == "floor" else f"{SCENARIO}:floor",
        note=note,
    )


def run(ctx: BenchContext) -> list[Result]:
    runs = QUICK_RUNS if ctx.quick else RUNS
    d = ctx.fresh_dir(SCENARIO)
    cli = _shepherd()
    out = [_result("floor", _time([sys.executable, "-c", "pass"], d, runs), "python -c pass")]
    for suffix, jobs in (("", 0), (f".jobs{_JOBS}", _JOBS)):
        name = f"q{jobs}"
        config = _config(d, name, jobs)
        base = [*cli, "--config", str(config)]
        job = "j0" if jobs else "J"
        if not jobs:
            add = [*base, "jobs", "add", job, "--executor", "shell", "--target", "true"]
            subprocess.run(add, cwd=d, env=_env(), check=True, capture_output=True)
        enqueue = [*base, "enqueue", job, "--delay", "1h"]
        status = [*base, "status"]
        with _Daemon(config, d / f"{name}.db", ctx.stall_timeout):  # adds the config's jobs
            socket = _time(enqueue, d, runs)
            served = _time(status, d, runs)
        direct = _time(enqueue, d, runs)
        alone = _time(status, d, runs)
        given = f", a config with {jobs} [[jobs]]" if jobs else ", a config without jobs"
        out += [
            _result(f"enqueue.socket{suffix}", socket, "shepherd enqueue via the daemon" + given),
            _result(f"enqueue.direct{suffix}", direct, "shepherd enqueue, no daemon" + given),
            _result(f"status.daemon{suffix}", served, "shepherd status, daemon running" + given),
            _result(f"status.alone{suffix}", alone, "shepherd status, no daemon" + given),
        ]
    return out
