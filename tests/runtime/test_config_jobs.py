"""The config's ``[[jobs]]`` check (``runtime._config_jobs``): the executors' checks
alone (``spec_checks``) refuse exactly what the executors themselves refuse, with the
same message and field, so a CLI command need not build the executors to check."""

from __future__ import annotations

from typing import Any

import pytest

from shepherd.actors.executors.gateway_config import GatewayConfig
from shepherd.runtime._cli_store import builtin_executors
from shepherd.runtime._config_jobs import check_config_jobs, spec_checks
from shepherd.runtime.config import Config
from shepherd.runtime.jobs import validate_job
from shepherd.store.errors import ConfigError
from shepherd.store.models import JobSpec

NOW = 1_800_000_000.0
GATEWAY = GatewayConfig(url="http://127.0.0.1:9")

SPECS: list[dict[str, Any]] = [
    {"executor": "nope", "target": "x"},
    {"executor": "shell", "target": " "},
    {"executor": "shell", "target": "true", "options": {"cwd": ""}},
    {"executor": "shell", "target": "true", "options": {"output_summary": 0}},
    {"executor": "shell", "target": "true", "options": {"bogus": 1}},
    {"executor": "shell", "target": "true", "options": {"cwd": "/tmp"}},
    {"executor": "python", "target": "", "name": ""},
    {"executor": "python", "target": "mod:fn", "options": {"cwd": "/tmp"}},
    {"executor": "python", "target": "mod:fn", "payload": {"a": 1}, "every": "1h"},
    {"executor": "external", "options": {"x": 1}},
    {"executor": "external", "capabilities": ["gpu"]},
    {"executor": "watchdog", "target": " "},
    {"executor": "watchdog", "target": "true", "options": {"check_cmd": 5}},
    {"executor": "watchdog", "target": "true", "options": {"timeout_min": 0}},
    {"executor": "watchdog", "target": "true", "options": {"self_destruct": "yes"}},
    {"executor": "watchdog", "target": "true", "options": {"label": " "}},
    {"executor": "watchdog", "target": "true", "options": {"started_at": "soon"}},
    {"executor": "watchdog", "target": "true", "options": {"started_at": 1.5e9}},
    {"executor": "agent", "payload": {"message": "hi"}},
    {"executor": "agent", "payload": {}},
    {"executor": "agent", "payload": {"message": "hi"}, "options": {"model": ""}},
    {"executor": "agent", "payload": {"message": "hi"}, "options": {"stream": 1}},
    {"executor": "agent", "payload": {"message": "hi"}, "options": {"read_only": "no"}},
    {"executor": "agent", "payload": {"message": "hi"}, "options": {"mode": "now"}},
    {"executor": "event", "target": "wake up"},
    {"executor": "event", "target": " "},
    {"executor": "event", "target": "x", "options": {"mode": "later"}},
    {"executor": "event", "target": "x", "options": {"mode": "next-heartbeat"}},
]


def _error(spec: JobSpec, executors: Any) -> tuple[str, str | None] | None:
    try:
        validate_job(spec, executors, NOW, previous=spec)
    except ConfigError as exc:
        return str(exc), exc.field
    return None


@pytest.mark.parametrize("gateway", [None, GATEWAY], ids=["no-gateway", "gateway"])
def test_the_checks_refuse_what_the_executors_refuse(gateway: GatewayConfig | None) -> None:
    cfg = Config(gateway=gateway)
    executors = builtin_executors(cfg, with_app=False)
    checks = spec_checks(cfg)
    assert sorted(checks) == sorted(executors)
    refused = 0
    for data in SPECS:
        spec = JobSpec(**{"name": "j", **data})
        want = _error(spec, executors)
        assert _error(spec, checks) == want, data
        refused += want is not None
    assert 0 < refused < len(SPECS)  # both kinds are compared


def test_a_bad_config_job_names_its_index_name_and_field() -> None:
    jobs = [
        JobSpec(name="ok", executor="shell", target="true"),
        JobSpec(name="dog", executor="watchdog", target="true", options={"timeout_min": 0}),
    ]
    with pytest.raises(ConfigError) as info:
        check_config_jobs(Config(jobs=jobs), NOW)
    assert info.value.field == "config: jobs[1] (dog)"
    assert "options.timeout_min" in str(info.value)


def test_a_gateway_job_without_a_gateway_is_refused() -> None:
    jobs = [JobSpec(name="a", executor="agent", payload={"message": "hi"})]
    with pytest.raises(ConfigError) as info:
        check_config_jobs(Config(jobs=jobs), NOW)
    assert info.value.field == "config: jobs[0] (a)"
    assert "agent job needs [gateway] url in config" in str(info.value)
    check_config_jobs(Config(jobs=jobs, gateway=GATEWAY), NOW)
