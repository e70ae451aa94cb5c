"""Runtime configuration: a frozen Struct decoded from TOML, validated once, at start.

Precedence: built-in defaults < the TOML file < ``SHEPHERD_<FIELD>`` environment
variables (top-level scalar fields only, e.g. ``SHEPHERD_DATABASE``,
``SHEPHERD_CONCURRENCY``, ``SHEPHERD_SYNCHRONOUS``). Unknown keys are errors.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import msgspec
import tomli_w

from actors.delivery import DeliveryConfig
from actors.executors.gateway import GatewayConfig
from store.errors import ConfigError
from store.models import JobSpec, Seconds, decode_spec

__all__ = ["Config", "default_config_toml", "load_config"]


class Config(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    database: str = "shepherd.db"
    data_dir: str = ""  # artifacts, outputs; default: "<database>.d" beside the database
    concurrency: int = 64
    synchronous: Literal["NORMAL", "FULL"] = "NORMAL"
    busy_timeout: Seconds = Seconds(5.0)
    shutdown_grace: Seconds = Seconds(30.0)
    pools: dict[str, int] = msgspec.field(default_factory=dict)
    restart_intensity: int = 5
    restart_period: Seconds = Seconds(10.0)
    health_interval: Seconds = Seconds(2.0)
    breaker_fail_max: int = 5
    breaker_reset: Seconds = Seconds(30.0)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    use_uvloop: bool = True
    jobs: list[JobSpec] = msgspec.field(default_factory=list)
    # agent gateway (agent / event executors, gateway delivery sink); None: no gateway
    gateway: GatewayConfig | None = None
    # announce delivery: aliases, webhook sinks, default sink, retries
    delivery: DeliveryConfig = msgspec.field(default_factory=DeliveryConfig)

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ConfigError("must be >= 1", field="concurrency")
        if self.restart_intensity < 0:
            raise ConfigError("must be >= 0", field="restart_intensity")
        if self.restart_period <= 0:
            raise ConfigError("must be > 0", field="restart_period")
        if self.health_interval <= 0:
            raise ConfigError("must be > 0", field="health_interval")
        if self.breaker_fail_max < 1:
            raise ConfigError("must be >= 1", field="breaker_fail_max")
        for name, limit in self.pools.items():
            if limit < 1:
                raise ConfigError("a pool limit must be >= 1", field=f"pools.{name}")
        if not self.database:
            raise ConfigError("must not be empty", field="database")

    @property
    def artifacts_dir(self) -> str:
        return self.data_dir or f"{self.database}.d"


_ENV_FIELDS = {
    "database": str,
    "data_dir": str,
    "concurrency": int,
    "synchronous": str,
    "busy_timeout": str,
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
        if "database" in data and not os.path.isabs(str(data["database"])):
            data["database"] = str(p.parent / str(data["database"]))
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
            "restart_intensity": 5,
            "restart_period": "10s",
            "log_level": "INFO",
            "use_uvloop": True,
            "pools": {"gpu": 1},
        }
    )
    comments = {
        "database": "SQLite file (WAL). Relative paths are relative to this file.",
        "synchronous": "NORMAL survives any process crash; FULL also survives power loss.",
        "concurrency": "Runs at once, across all jobs.",
        "shutdown_grace": "On SIGTERM: how long running runs may finish before they are cancelled.",
        "busy_timeout": "How long a write waits for another writer's lock.",
        "restart_intensity": "A supervisor gives up after this many restarts ...",
        "restart_period": "... within this many seconds, and the runtime exits non-zero.",
        "log_level": "DEBUG, INFO, WARNING or ERROR.",
        "use_uvloop": "Run on uvloop when it is installed.",
    }
    lines = [
        "# shepherd configuration. Every key is optional; these are the defaults.",
        "# Environment variables SHEPHERD_<KEY> override top-level keys.",
        "",
    ]
    for line in body.splitlines():
        key = line.split("=", 1)[0].strip()
        if key in comments:
            lines.append(f"# {comments[key]}")
        if line.startswith("[pools]"):
            lines.append("# Resource pools: name = how many runs of jobs in the pool at once.")
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
