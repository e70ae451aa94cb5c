"""Runtime configuration: a frozen Struct decoded from TOML, validated once, at start.

Precedence: built-in defaults < the TOML file < ``SHEPHERD_<FIELD>`` environment
variables (top-level scalar fields only, e.g. ``SHEPHERD_DATABASE``,
``SHEPHERD_CONCURRENCY``, ``SHEPHERD_SYNCHRONOUS``, ``SHEPHERD_START_CHECK``). Unknown
keys are errors.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import tomli_w

from shepherd.actors.executors.gateway import GatewayConfig
from shepherd.actors.retention import RetentionConfig
from shepherd.actors.router.delivery import DeliveryConfig
from shepherd.store.bounds import DAY, HOUR, Range, check_bounds
from shepherd.store.errors import ConfigError
from shepherd.store.factory import Check, database_path
from shepherd.store.models import JobSpec, Seconds, decode_spec

__all__ = ["Config", "default_config_toml", "load_config"]


class Config(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    database: str = "shepherd.db"
    data_dir: str = ""  # artifacts, outputs; default: "<database>.d" beside the database
    concurrency: Annotated[int, Range(1, 100_000)] = 64
    synchronous: Literal["NORMAL", "FULL"] = "NORMAL"
    busy_timeout: Annotated[Seconds, Range(0, HOUR, "s")] = Seconds(5.0)
    # the integrity check before the runtime writes (store.sqlite.integrity): auto is
    # full up to 256 MiB, bounded above
    start_check: Literal["auto", "full", "bounded", "off"] = "auto"
    shutdown_grace: Annotated[Seconds, Range(0, DAY, "s")] = Seconds(30.0)
    pools: dict[str, Annotated[int, Range(1, 100_000)]] = msgspec.field(default_factory=dict)
    restart_intensity: Annotated[int, Range(0, 10_000)] = 5
    restart_period: Annotated[Seconds, Range(0.001, DAY, "s")] = Seconds(10.0)
    health_interval: Annotated[Seconds, Range(0.01, HOUR, "s")] = Seconds(2.0)
    breaker_fail_max: Annotated[int, Range(1, 10_000)] = 5
    breaker_reset: Annotated[Seconds, Range(0.001, DAY, "s")] = Seconds(30.0)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    use_uvloop: bool = True
    jobs: list[JobSpec] = msgspec.field(default_factory=list)
    # agent gateway (agent / event executors, gateway delivery sink); None: no gateway
    gateway: GatewayConfig | None = None
    # announce delivery: aliases, webhook sinks, default sink, retries
    delivery: DeliveryConfig = msgspec.field(default_factory=DeliveryConfig)
    # the pruner: how long finished runs, dispatches, messages and deliveries are kept
    retention: RetentionConfig = msgspec.field(default_factory=RetentionConfig)

    def __post_init__(self) -> None:
        # runs for a Config built in Python too: bounds of every numeric field, the
        # declared jobs, [delivery] and [gateway] included (jobs[0].retry.max_attempts)
        check_bounds(self)
        for name in ("database", "data_dir"):
            if not isinstance(getattr(self, name), str):
                raise ConfigError("expected a string (a file path)", field=name)
        if not self.database:
            raise ConfigError("must not be empty", field="database")
        # a sqlite:/// URL names its file; another engine's URL is refused here
        path = database_path(self.database)
        if path != self.database:
            msgspec.structs.force_setattr(self, "database", path)

    @property
    def store_check(self) -> Check:
        """``start_check`` as the store names it (``off`` is ``none``)."""
        return "none" if self.start_check == "off" else self.start_check

    @property
    def artifacts_dir(self) -> str:
        return self.data_dir or f"{self.database}.d"


_ENV_FIELDS = {
    "database": str,
    "data_dir": str,
    "concurrency": int,
    "synchronous": str,
    "busy_timeout": str,
    "start_check": str,
    "shutdown_grace": str,
    "restart_intensity": int,
    "restart_period": str,
    "log_level": str,
    "use_uvloop": str,
}


def _env_overrides(env: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, kind in _ENV_FIELDS.items():
        raw = env.get(f"SHEPHERD_{name.upper()}")
        if raw is None:
            continue
        if kind is int:
            try:
                out[name] = int(raw)
            except ValueError:
                raise ConfigError(
                    f"expected an integer, got {raw!r}", field=f"SHEPHERD_{name.upper()}"
                ) from None
        elif name == "use_uvloop":
            out[name] = raw.strip().lower() in ("1", "true", "yes", "on")
        else:
            out[name] = raw
    return out


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Config:
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        try:
            data = tomllib.loads(p.read_text())
        except FileNotFoundError:
            raise ConfigError(f"no such file {str(p)!r}", field="config") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{p}: invalid TOML: {exc}", field="config") from None
        database = data.get("database")
        if database is not None and not isinstance(database, str):
            raise ConfigError(
                f"expected a string (a file path), got {database!r} in {p}", field="database"
            )
        if database:
            database = database_path(database)
        if database and not os.path.isabs(database):
            data["database"] = str(p.parent / database)
    data.update(_env_overrides(os.environ if env is None else env))
    data.update({k: v for k, v in overrides.items() if v is not None})
    return decode_spec(data, Config, what="config")


def default_config_toml(database: str = "shepherd.db") -> str:
    """The commented default config written by ``config init``."""
    body = tomli_w.dumps(
        {
            "database": database,
            "synchronous": "NORMAL",
            "concurrency": 64,
            "shutdown_grace": "30s",
            "busy_timeout": "5s",
            "start_check": "auto",
            "restart_intensity": 5,
            "restart_period": "10s",
            "log_level": "INFO",
            "use_uvloop": True,
            "pools": {"gpu": 1},
            "retention": {
                "interval": "1h",
                "batch_size": 1000,
                "runs_per_job": 100,
                "runs_max_age": 0,
                "dispatches_max_age": "7d",
                "dead_max_age": 0,
                "messages_max_age": "30d",
                "messages_delivered_max_age": "3d",
                "deliveries_max_age": "30d",
                "deliveries_sent_max_age": "3d",
            },
        }
    )
    comments = {
        "database": "SQLite file (WAL). Relative paths are relative to this file.",
        "synchronous": "NORMAL survives any process crash; FULL also survives power loss.",
        "concurrency": "Runs at once, across all jobs.",
        "shutdown_grace": "On SIGTERM: how long running runs may finish before they are cancelled.",
        "busy_timeout": "How long a write waits for another writer's lock.",
        "start_check": "Integrity check at start, before anything writes: full (every page:\n"
        "~1.1-1.7 s per GB warm, ~15 s cold), bounded (the small tables whole, probes of\n"
        "the large ones: milliseconds; what every CLI command runs), off (logs a warning),\n"
        "or auto: full up to 256 MiB, bounded above. `shepherd doctor` always runs full.",
        "restart_intensity": "A supervisor gives up after this many restarts ...",
        "restart_period": "... within this many seconds, and the runtime exits non-zero.",
        "log_level": "DEBUG, INFO, WARNING or ERROR.",
        "use_uvloop": "Run on uvloop when it is installed.",
        "interval": "How often a retention pass runs (the first a minute after start).",
        "batch_size": "Rows deleted per write op; each batch is its own commit.",
        "runs_per_job": "Finished runs kept per job, newest first (0: no count limit).",
        "runs_max_age": "Finished runs older than this go (0: no age limit).",
        "dispatches_max_age": "Done / cancelled dispatches (a keyed one: not before its key).",
        "dead_max_age": "Dead letters and their runs (0: kept until purged).",
        "messages_max_age": "Read / expired / failed inbox messages.",
        "messages_delivered_max_age": "Delivered, unread inbox messages.",
        "deliveries_max_age": "Failed deliveries.",
        "deliveries_sent_max_age": "Sent deliveries.",
    }
    lines = [
        "# shepherd configuration. Every key is optional; these are the defaults.",
        "# Environment variables SHEPHERD_<KEY> override top-level keys.",
        "",
    ]
    for line in body.splitlines():
        key = line.split("=", 1)[0].strip()
        if key in comments:
            lines += [f"# {text}" for text in comments[key].split("\n")]
        if line.startswith("[pools]"):
            lines.append("# Resource pools: name = how many runs of jobs in the pool at once.")
        if line.startswith("[retention]"):
            lines.append("# The pruner: how long history is kept. 0 turns a rule off.")
        lines.append(line)
    lines += [
        "",
        "# Jobs can be declared here too (or added with `shepherd jobs add`):",
        "# [[jobs]]",
        '# name = "nightly-report"',
        '# executor = "shell"',
        '# target = "echo report"',
        '# cron = "0 3 * * *"',
        '# tz = "Europe/Berlin"',
        '# timeout = "10m"',
        "",
    ]
    return "\n".join(lines)
