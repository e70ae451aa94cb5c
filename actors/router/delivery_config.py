"""``[delivery]``, announce delivery's configuration (``actors.router.delivery``), apart
from the delivery decisions so that loading the configuration (every CLI command)
imports neither the executors' output rules nor the store's write ops."""

from __future__ import annotations

from typing import Annotated

import msgspec

from shepherd.store.bounds import DAY, HOUR, Range, check_bounds
from shepherd.store.durations import Seconds
from shepherd.store.errors import ConfigError

__all__ = ["DeliveryConfig", "DeliveryTarget"]


class DeliveryTarget(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    channel: str = ""
    target: str = ""


class DeliveryConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """``[delivery]`` in the config file."""

    aliases: dict[str, DeliveryTarget] = msgspec.field(default_factory=dict)
    webhooks: dict[str, str] = msgspec.field(default_factory=dict)  # sink name → URL
    default_sink: str = "gateway"
    max_attempts: Annotated[int, Range(1, 1000)] = 8
    retry_base: Annotated[Seconds, Range(0.001, DAY, "s")] = Seconds(5.0)
    retry_max: Annotated[Seconds, Range(0.001, 30 * DAY, "s")] = Seconds(600.0)
    timeout: Annotated[Seconds, Range(0.001, HOUR, "s")] = Seconds(10.0)  # one send
    concurrency: Annotated[int, Range(1, 10_000)] = 16  # sends in flight at once
    # inbox message expiry sweep
    expire_interval: Annotated[Seconds, Range(0.001, DAY, "s")] = Seconds(15.0)
    # dead-letter alerts for jobs without options.dead_letter_alert ("": none)
    dead_letter_to: str = ""  # an alias ("@ops") or a target
    dead_letter_channel: str = ""

    def __post_init__(self) -> None:
        check_bounds(self, prefix="delivery.")
        if self.retry_max < self.retry_base:
            raise ConfigError("must be >= delivery.retry_base", field="delivery.retry_max")
        for name, url in self.webhooks.items():
            if not url.startswith(("http://", "https://")):
                raise ConfigError(
                    f"expected an http(s) URL, got {url!r}", field=f"delivery.webhooks.{name}"
                )
        for alias in self.aliases:
            if not alias or alias.startswith("@"):
                raise ConfigError(
                    "write aliases without the '@'", field=f"delivery.aliases.{alias}"
                )
