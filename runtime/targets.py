"""Python targets: the ``Targets`` registry and loading an application's targets by name.

    targets = Targets()

    @targets.task                                # the target "ping" (the function's name)
    async def ping(ctx): ...

    @targets.task("send-report", payload=Report)  # ctx.payload is a Report
    async def send_report(ctx): ...

``Runtime.open(config, targets=targets)`` serves them in-process; the standalone daemon
imports them with ``shepherd run --app myapp.tasks:targets`` (or ``app = "..."`` in the
config), as Celery's ``-A``, huey's consumer and arq's worker settings do. What the
name points at may be a ``Targets``, a plain dict of name → async callable, or a factory
(a callable taking no arguments that returns one of those). ``load_app`` turns every
way that can fail into a ``ConfigError`` on the ``app`` field naming the module and the
attribute (the CLI's exit 2).
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar, overload

import msgspec

from shepherd.actors.executors.python import (
    PythonExecutor,
    PythonTarget,
    Target,
    check_payload_type,
)
from shepherd.store.errors import ConfigError

__all__ = ["PayloadType", "TargetSource", "Targets", "iter_targets", "load_app", "python_executor"]

F = TypeVar("F", bound=Callable[..., Any])
_DEFAULT_ATTRIBUTE = "targets"


class Targets:
    """A registry of python targets: name → (async callable, payload type or None)."""

    def __init__(self) -> None:
        self._entries: dict[str, Target] = {}

    def register(
        self, name: str, fn: PythonTarget, *, payload: type[msgspec.Struct] | None = None
    ) -> PythonTarget:
        """Add ``fn`` as the target ``name`` (replacing one of that name); returns ``fn``.
        ``payload``: the msgspec Struct its payload must fit (checked at enqueue)."""
        if not isinstance(name, str) or not name:
            raise ConfigError(f"a target name must be a non-empty string, got {name!r}")
        _check_async(name, fn)
        check_payload_type(name, payload)
        self._entries[name] = Target(fn, payload)
        return fn

    @overload
    def task(self, fn: F, /) -> F: ...
    @overload
    def task(
        self, name: str | None = None, /, *, payload: type[msgspec.Struct] | None = None
    ) -> Callable[[F], F]: ...
    def task(self, arg: Any = None, /, *, payload: type[msgspec.Struct] | None = None) -> Any:
        """``@targets.task``, ``@targets.task("name")``, ``@targets.task(payload=T)``;
        the name defaults to the function's ``__name__``. The function is returned as is."""
        if callable(arg):
            self.register(arg.__name__, arg)
            return arg

        def decorate(fn: F) -> F:
            self.register(arg or fn.__name__, fn, payload=payload)
            return fn

        return decorate

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def items(self) -> Iterator[tuple[str, Target]]:
        return iter(list(self._entries.items()))

    def __repr__(self) -> str:
        return f"<Targets {', '.join(self._entries) or '(empty)'}>"


TargetSource = Targets | Mapping[str, PythonTarget]
PayloadType = type[msgspec.Struct]  # a target's declared payload type


def iter_targets(source: TargetSource | None) -> Iterator[tuple[str, Target]]:
    """(name, Target) of a ``Targets`` or a dict of name → callable."""
    if source is None:
        return iter(())
    if isinstance(source, Targets):
        return source.items()
    return iter([(name, Target(fn)) for name, fn in source.items()])


def python_executor(app: str, *sources: TargetSource | None) -> PythonExecutor:
    """The ``python`` executor of a runtime: the targets of ``app`` (imported first, so a
    bad one is refused before anything is opened), then ``sources`` over them."""
    python = PythonExecutor()
    for source in (load_app(app) if app else None, *sources):
        for name, target in iter_targets(source):
            python.register(name, target.fn, payload=target.payload)
    return python


def load_app(spec: str) -> Targets:
    """Import ``package.module:attribute`` (``attribute`` defaults to ``targets``) and
    return its targets. The current directory is put on ``sys.path`` first, as Celery
    does, so an application's own package imports from where the command runs."""
    module_name, attribute = _split(spec)
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing == module_name or module_name.startswith(f"{missing}."):
            raise ConfigError(
                f"no module named {missing!r} (importing {spec!r}; searched the current"
                f" directory {cwd} and sys.path)",
                field="app",
            ) from None
        raise ConfigError(
            f"importing module {module_name!r} failed: ModuleNotFoundError: {exc}",
            field="app",
        ) from None
    except Exception as exc:  # the application's own import-time error
        raise ConfigError(
            f"importing module {module_name!r} failed: {type(exc).__name__}: {exc}",
            field="app",
        ) from None
    try:
        value = getattr(module, attribute)
    except AttributeError:
        raise ConfigError(
            f"module {module_name!r} has no attribute {attribute!r}", field="app"
        ) from None
    where = f"{module_name}:{attribute}"
    if not isinstance(value, Targets | Mapping):
        value = _call_factory(value, where)
    return _registry(value, where)


def _split(spec: str) -> tuple[str, str]:
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError("expected 'package.module:attribute'", field="app")
    module_name, sep, attribute = spec.strip().partition(":")
    if not sep:
        attribute = _DEFAULT_ATTRIBUTE
    if (
        not module_name
        or not attribute
        or ":" in attribute
        or not all(part.isidentifier() for part in module_name.split("."))
        or not attribute.isidentifier()
    ):
        raise ConfigError(f"expected 'package.module:attribute', got {spec!r}", field="app")
    return module_name, attribute


def _call_factory(value: Any, where: str) -> Any:
    kinds = "a shepherd.Targets, a dict of name -> async callable, or a factory returning one"
    if inspect.iscoroutinefunction(value):
        raise ConfigError(
            f"{where!r} is an async function (one target), not a registry; expected {kinds}",
            field="app",
        )
    if not callable(value) or isinstance(value, type):
        raise ConfigError(
            f"{where!r} is {_kind(value)}, not a registry; expected {kinds}", field="app"
        )
    try:
        made = value()
    except Exception as exc:
        raise ConfigError(
            f"the factory {where!r} failed: {type(exc).__name__}: {exc}", field="app"
        ) from None
    if not isinstance(made, Targets | Mapping):
        raise ConfigError(
            f"the factory {where!r} returned {_kind(made)}, not a registry; expected {kinds}",
            field="app",
        )
    return made


def _registry(value: Targets | Mapping[Any, Any], where: str) -> Targets:
    if isinstance(value, Targets):
        return value
    out = Targets()
    for name, fn in value.items():
        try:
            out.register(name, fn)
        except ConfigError as exc:
            raise ConfigError(f"{where!r}: {exc}", field="app") from None
    return out


def _check_async(name: str, fn: Any) -> None:
    call = getattr(fn, "__call__", None)  # noqa: B004 - an object with an async __call__
    if inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(call):
        return
    raise ConfigError(f"target {name!r} is not an async callable (got {_kind(fn)})")


def _kind(value: Any) -> str:
    if inspect.isfunction(value):
        return f"a plain function {value.__qualname__!r}"
    if isinstance(value, type):
        return f"the class {value.__qualname__!r}"
    return f"{type(value).__name__} {value!r}"[:120]
