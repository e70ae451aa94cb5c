"""Runtime configuration: a frozen Struct decoded from TOML, validated once, at start.

Precedence: built-in defaults < the TOML file < ``SHEPHERD_<FIELD>`` environment
variables (top-level scalar fields only, e.g. ``SHEPHERD_DATABASE``,
``SHEPHERD_CONCURRENCY``, ``SHEPHERD_SYNCHRONOUS``, ``SHEPHERD_START_CHECK``). Unknown
keys are errors.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import msgspec

# each section's Struct lives in a module of its own that imports msgspec and the
# store's value types only: every CLI command loads this module, never the actors
from shepherd.actors.backup_config import BackupConfig
from shepherd.actors.cluster_config import ClusterConfig
from shepherd.actors.dispatcher.rates import RatesConfig
from shepherd.actors.executors.gateway_config import GatewayConfig
from shepherd.actors.liveness_config import AgentsConfig
from shepherd.actors.retention_config import RetentionConfig
from shepherd.actors.router.delivery_config import DeliveryConfig
from shepherd.actors.spool.config import SpoolConfig
from shepherd.runtime.http.config import HttpConfig
from shepherd.store.bounds import DAY, HOUR, TOO_DEEP, Range, check_bounds
from shepherd.store.errors import ConfigError
from shepherd.store.factory import database_path, is_postgres
from shepherd.store.models import JobSpec, Seconds, decode_spec

if TYPE_CHECKING:
    from shepherd.store.factory import Check

__all__ = ["Config", "load_config", "read_text"]


class Config(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    database: str = "shepherd.db"
    # python targets to import, "package.module:attribute" (runtime/targets.py); "": none
    app: str = ""
    data_dir: str = ""  # artifacts, outputs; default: "<database>.d" beside the database
    concurrency: Annotated[int, Range(1, 100_000)] = 64
    synchronous: Literal["NORMAL", "FULL"] = "NORMAL"
    busy_timeout: Annotated[Seconds, Range(0, HOUR, "s")] = Seconds(5.0)
    # the integrity check before the runtime writes (store.sqlite.integrity): auto is
    # full up to 256 MiB, bounded above
    start_check: Literal["auto", "full", "bounded", "off"] = "auto"
    shutdown_grace: Annotated[Seconds, Range(0, DAY, "s")] = Seconds(30.0)
    pools: dict[str, Annotated[int, Range(1, 100_000)]] = msgspec.field(default_factory=dict)
    # token buckets on admissions: executor.shell = { rate = "10/s", burst = 20 }, pool.db,
    # agent.main (actors/dispatcher/rates.py); a job's own is its spec's rate / burst
    rates: RatesConfig = msgspec.field(default_factory=RatesConfig)
    restart_intensity: Annotated[int, Range(0, 10_000)] = 5
    restart_period: Annotated[Seconds, Range(0.001, DAY, "s")] = Seconds(10.0)
    health_interval: Annotated[Seconds, Range(0.01, HOUR, "s")] = Seconds(2.0)
    # how long before its slot the scheduler commits a slot's dispatch (not_before: the
    # slot); 0 commits at the slot
    schedule_lead: Annotated[Seconds, Range(0, 60, "s")] = Seconds(2.0)
    breaker_fail_max: Annotated[int, Range(1, 10_000)] = 5
    breaker_reset: Annotated[Seconds, Range(0.001, DAY, "s")] = Seconds(30.0)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    use_uvloop: bool = True
    jobs: list[JobSpec] = msgspec.field(default_factory=list)
    # the agents registry: [[agents.agent]] registered at start, owner_filter, liveness
    agents: AgentsConfig = msgspec.field(default_factory=AgentsConfig)
    # agent gateway (agent / event executors, gateway delivery sink); None: no gateway
    gateway: GatewayConfig | None = None
    # announce delivery: aliases, webhook sinks, default sink, retries
    delivery: DeliveryConfig = msgspec.field(default_factory=DeliveryConfig)
    # the pruner: how long finished runs, dispatches, messages and deliveries are kept
    retention: RetentionConfig = msgspec.field(default_factory=RetentionConfig)
    # the spool directory the runtime watches (actors/spool); None: no spool
    spool: SpoolConfig | None = None
    # scheduled backups (actors/backup.py): every (0: off), keep, dir
    backup: BackupConfig = msgspec.field(default_factory=BackupConfig)
    # the HTTP API (runtime/http): listen, tokens, limits; off unless listen is set
    http: HttpConfig = msgspec.field(default_factory=HttpConfig)
    # this runtime as a node of a shared database (actors/cluster.py): node, lease,
    # concurrency (a cluster-wide cap)
    cluster: ClusterConfig = msgspec.field(default_factory=ClusterConfig)

    def __post_init__(self) -> None:
        # runs for a Config built in Python too: bounds of every numeric field, the
        # declared jobs, [delivery] and [gateway] included (jobs[0].retry.max_attempts)
        check_bounds(self)
        self.rates.buckets()  # each rate parsed: errors name rates.executor.shell.rate
        for name in ("database", "data_dir"):
            if not isinstance(getattr(self, name), str):
                raise ConfigError("expected a string (a file path)", field=name)
        if not isinstance(self.app, str):
            raise ConfigError("expected a string, 'package.module:attribute'", field="app")
        if not self.database:
            raise ConfigError("must not be empty", field="database")
        # a sqlite:/// URL names its file; a postgresql:// URL stays; another is refused
        path = self.database if is_postgres(self.database) else database_path(self.database)
        if path != self.database:
            msgspec.structs.force_setattr(self, "database", path)
        if is_postgres(self.database) and float(self.backup.every) > 0 and not self.backup.dir:
            raise ConfigError(
                "required when database is a PostgreSQL URL (no file to keep the pg_dump"
                " backups beside)",
                field="backup.dir",
            )

    @property
    def store_check(self) -> Check:
        """``start_check`` as the store names it (``off`` is ``none``)."""
        return "none" if self.start_check == "off" else self.start_check

    @property
    def backup_dir(self) -> str:
        """Where scheduled backups go: ``[backup] dir``, else ``<database>.backups``
        (on PostgreSQL ``dir`` is required when backups are on; "" while they are off)."""
        if self.backup.dir or is_postgres(self.database):
            return self.backup.dir
        return f"{self.database}.backups"

    @property
    def artifacts_dir(self) -> str:
        """``data_dir``, else ``<database>.d`` beside a SQLite file (the resolved one:
        every name of the file, a symlink's too, finds the process journals a crashed
        runtime left there); on PostgreSQL (no file to sit beside)
        ``$XDG_DATA_HOME/shepherd/<digest of the URL>``."""
        if self.data_dir:
            return self.data_dir
        if is_postgres(self.database):
            import hashlib  # not at import: only a PostgreSQL URL's directory needs it

            home = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
            digest = hashlib.sha256(self.database.encode()).hexdigest()[:16]
            return os.path.join(home, "shepherd", digest)
        return f"{os.path.realpath(self.database)}.d"


# every top-level key that is one value (not a table or a list) can come from
# ``SHEPHERD_<KEY>``: an integer parsed here, a boolean from its usual words, the rest
# as the string a TOML file would hold ("30s", "FULL"), checked as the file's would be
_ENV_INT = frozenset({"concurrency", "restart_intensity", "breaker_fail_max"})
_ENV_BOOL = frozenset({"use_uvloop"})
_ENV_STR = frozenset(
    {
        "database", "app", "data_dir", "synchronous", "busy_timeout", "start_check",
        "shutdown_grace", "restart_period", "health_interval", "schedule_lead",
        "breaker_reset", "log_level",
    }
)  # fmt: skip
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _env_overrides(env: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in sorted(_ENV_INT | _ENV_BOOL | _ENV_STR):
        var = f"SHEPHERD_{name.upper()}"
        raw = env.get(var)
        if raw is None:
            continue
        if name in _ENV_INT:
            try:
                out[name] = int(raw)
            except ValueError:
                raise ConfigError(f"expected an integer, got {raw!r}", field=var) from None
        elif name in _ENV_BOOL:
            word = raw.strip().lower()
            if word not in _TRUE + _FALSE:
                raise ConfigError(
                    f"expected one of {', '.join(_TRUE + _FALSE)}, got {raw!r}", field=var
                )
            out[name] = word in _TRUE
        else:
            out[name] = raw
    return out


def read_text(path: Path, *, field: str) -> str:
    """A file given as input, as UTF-8 text; ConfigError naming ``field`` (and the path)
    when it is missing, a directory, unreadable or not UTF-8."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"no such file {str(path)!r}", field=field) from None
    except IsADirectoryError:
        raise ConfigError(f"{str(path)!r} is a directory, not a file", field=field) from None
    except OSError as exc:
        raise ConfigError(f"cannot read {str(path)!r} ({exc.strerror})", field=field) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{str(path)!r} is not UTF-8 text (byte {exc.start}: {exc.reason})", field=field
        ) from None


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Config:
    data: dict[str, Any] = {}
    if path is not None:
        import tomllib  # a file to read: an embedding application passes none

        p = Path(path)
        text = read_text(p, field="config")
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{p}: invalid TOML: {exc}", field="config") from None
        except RecursionError:
            raise ConfigError(f"{p}: {TOO_DEEP}", field="config") from None
        database = data.get("database")
        if database is not None and not isinstance(database, str):
            raise ConfigError(
                f"expected a string (a file path), got {database!r} in {p}", field="database"
            )
        if database and not is_postgres(database):
            database = database_path(database)
        if database and not is_postgres(database) and not os.path.isabs(database):
            data["database"] = str(p.parent / database)
        spool = data.get("spool")
        if isinstance(spool, dict) and isinstance(spool.get("dir"), str) and spool["dir"]:
            data["spool"] = {**spool, "dir": str(p.parent / os.path.expanduser(spool["dir"]))}
        backup = data.get("backup")
        if isinstance(backup, dict):
            bdir = backup.get("dir")
            if isinstance(bdir, str) and bdir and not os.path.isabs(bdir):
                data["backup"] = {**backup, "dir": str(p.parent / bdir)}
    data.update(_env_overrides(os.environ if env is None else env))
    data.update({k: v for k, v in overrides.items() if v is not None})
    return decode_spec(data, Config, what="config")
