"""The task-group side of ``Runtime`` (OCS's task tracker, a dead-man switch).

    gid = await rt.create_group("fanout", ["a", "b", "c"], timeout=600, to="@ops")
    await rt.report("fanout", "a", "started")
    await rt.heartbeat("fanout", "b")
    await rt.report("fanout", "a", "completed", message="12 files")
    (await rt.group("fanout")).members      # pending / started / completed / failed / dead

The rules (deadlines, summary, exactly once) are ``store/ops/groups.py``; the timers
are the ``groups`` actor's (``actors/groups.py``). ``create_op`` and ``report_error``
are shared with the CLI (``runtime/_cli_groups.py``), which writes directly and wakes
the daemon with ``g``. Every bad value is a ``ConfigError`` naming its field and
nothing is stored; an unknown group is ``NotFound``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import assert_never

from shepherd.actors.groups import GroupsChanged, GroupsMsg
from shepherd.actors.primitives.clock import Clock
from shepherd.actors.primitives.mailbox import Address
from shepherd.actors.router.delivery import DeliveryConfig, resolve_target
from shepherd.actors.writer import StoreMsg, write
from shepherd.store.bounds import DAY, Range, check_value
from shepherd.store.errors import ConfigError, MailboxClosed, NotFound
from shepherd.store.models import TaskGroup
from shepherd.store.ops import CreateGroup, Reported, ReportMember
from shepherd.store.protocol import Store

__all__ = [
    "DEFAULT_TIMEOUT",
    "MAX_MEMBERS",
    "REPORTS",
    "TIMEOUT",
    "GroupsApi",
    "create_op",
    "report_error",
    "report_op",
]

DEFAULT_TIMEOUT = 600.0  # OCS
TIMEOUT = Range(1, 30 * DAY, "s")  # a group's timeout and its heartbeat window
MAX_MEMBERS = 1000
MAX_TEXT = 10_000  # a report's message
REPORTS = ("started", "completed", "failed")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@/-]{0,199}$")
_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@/-]{0,127}$")


def create_op(
    name: str,
    members: Sequence[str],
    *,
    now: float,
    delivery: DeliveryConfig,
    timeout: float = DEFAULT_TIMEOUT,
    heartbeat_window: float | None = None,
    to: str | None = None,
    channel: str | None = None,
    created_by: str | None = None,
) -> CreateGroup:
    """The write that creates a group, after checking every field."""
    if not isinstance(name, str) or not _NAME.match(name) or name.isdigit():
        raise ConfigError(
            f"invalid group name {name!r}: 1-200 characters, letters, digits and _ . : @ / -,"
            " not only digits (a number means a group id)",
            field="name",
        )
    if isinstance(members, str) or not members:
        raise ConfigError("a group needs at least one member label", field="members")
    if len(members) > MAX_MEMBERS:
        raise ConfigError(f"at most {MAX_MEMBERS} members", field="members")
    seen: set[str] = set()
    for i, label in enumerate(members):
        if not isinstance(label, str) or not _LABEL.match(label):
            raise ConfigError(
                f"invalid member label {label!r}: 1-128 letters, digits and _ . : @ / -",
                field=f"members[{i}]",
            )
        if label in seen:
            raise ConfigError(f"duplicate member label {label!r}", field=f"members[{i}]")
        seen.add(label)
    check_value(timeout, TIMEOUT, field="timeout")
    window = min(float(timeout), 300.0) if heartbeat_window is None else heartbeat_window
    check_value(window, TIMEOUT, field="heartbeat_window")
    for field, value in (("to", to), ("channel", channel), ("created_by", created_by)):
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise ConfigError("must be a non-empty string (omit it for none)", field=field)
    resolved_channel, target = (
        resolve_target(to, channel, delivery.aliases) if (to or channel) else (None, None)
    )
    return CreateGroup(
        name=name, members=list(members), timeout=float(timeout), heartbeat_window=float(window),
        now=now, created_by=created_by, delivery_to=to, delivery_channel=channel,
        channel=resolved_channel, target=target,
    )  # fmt: skip


def report_op(
    group: str | int,
    member: str,
    report: str,
    *,
    now: float,
    message: str | None = None,
    max_attempts: int = 8,
) -> ReportMember:
    """A member's report (``started`` / ``completed`` / ``failed``) or ``heartbeat``
    of ``group`` (an id, or a name); the member and the group's state are checked in the
    op's transaction (``report_error`` says what a refusal means)."""
    if report not in (*REPORTS, "heartbeat"):
        raise ConfigError(f"expected one of {', '.join(REPORTS)}, got {report!r}", field="status")
    if message is not None and len(message) > MAX_TEXT:
        raise ConfigError(f"longer than {MAX_TEXT} characters", field="message")
    if not isinstance(member, str) or not member:
        raise ConfigError("must not be empty", field="member")
    return ReportMember(
        group=group, label=member, report=report, now=now,  # type: ignore[arg-type]
        message=message, max_attempts=max_attempts,
    )  # fmt: skip


def report_error(result: Reported, group: str | int, member: str) -> None:
    """Raise what a ``Reported`` that changed nothing means; nothing was stored."""
    name = result.group or group
    match result.result:
        case "ok":
            return
        case "no-group":
            raise NotFound(f"group: no task group {group!r}")
        case "no-member":
            raise ConfigError(f"group {name} has no member {member!r}", field="member")
        case "final":
            raise ConfigError(
                f"member {member!r} of group {name} is already {result.member_status}",
                field="member",
            )
        case "closed":
            raise ConfigError(f"group {name} has ended ({result.group_status})", field="group")
        case _:
            assert_never(result.result)


class GroupsApi:
    def __init__(
        self,
        *,
        clock: Clock,
        store: Store,
        writer: Address[StoreMsg],
        groups: Address[GroupsMsg],
        delivery: DeliveryConfig,
    ) -> None:
        self.clock = clock
        self.store = store
        self._writer = writer
        self._groups = groups
        self._delivery = delivery

    async def create_group(
        self,
        name: str,
        members: Sequence[str],
        *,
        timeout: float = DEFAULT_TIMEOUT,
        heartbeat_window: float | None = None,
        to: str | None = None,
        channel: str | None = None,
        created_by: str | None = None,
    ) -> TaskGroup:
        """A group expecting ``members``; each is ``dead`` once ``timeout`` seconds
        have passed since now and it has not heartbeated (or reported) within
        ``heartbeat_window`` (default min(timeout, 300 s)). When every member is
        final the summary goes to ``to`` / ``channel`` (an alias like ``@ops``), once."""
        op = create_op(
            name, members, now=self.clock.wall(), delivery=self._delivery, timeout=timeout,
            heartbeat_window=heartbeat_window, to=to, channel=channel, created_by=created_by,
        )  # fmt: skip
        group_id: int = await write(self._writer, op)
        if group_id == 0:
            raise ConfigError(f"an open task group named {name!r} exists", field="name")
        await self._changed(group_id, delivery=False)
        return await self.group(group_id)

    async def report(
        self, group: str | int, member: str, status: str, *, message: str | None = None
    ) -> Reported:
        """``member`` of ``group`` (a name or an id) reports ``started``, ``completed``
        (``message``: its result) or ``failed`` (``message``: the error). Returns the
        member's and the group's status after it (and the summary's delivery id when
        this report ended the group); ``rt.group(...)`` has the rest."""
        return await self._report(group, member, status, message)

    async def heartbeat(self, group: str | int, member: str) -> Reported:
        """``member`` is alive: its deadline moves to now + the heartbeat window."""
        return await self._report(group, member, "heartbeat", None)

    async def group(self, ref: str | int) -> TaskGroup:
        found = await self.store.task_group(ref)
        if found is None:
            raise NotFound(f"group: no task group {ref!r}")
        return found

    async def groups(self, *, status: str | None = None, limit: int = 100) -> list[TaskGroup]:
        if status is not None and status not in ("open", "completed", "failed"):
            raise ConfigError("expected one of open, completed, failed", field="status")
        return await self.store.task_groups(status=status, limit=limit)

    async def _report(
        self, ref: str | int, member: str, report: str, message: str | None
    ) -> Reported:
        op = report_op(
            ref, member, report, now=self.clock.wall(), message=message,
            max_attempts=self._delivery.max_attempts,
        )  # fmt: skip
        result: Reported = await write(self._writer, op)
        report_error(result, ref, member)
        assert result.group_id is not None
        await self._changed(result.group_id, delivery=result.delivery_id is not None)
        return result

    async def _changed(self, group_id: int, *, delivery: bool) -> None:
        try:
            await self._groups.send(GroupsChanged([group_id], delivery))
        except MailboxClosed:  # the runtime is stopping: the next start loads it
            pass
