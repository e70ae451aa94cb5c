"""What a job's ``approval`` policy must satisfy (``validate_approval``), apart from the
approvals API (``_approvals_api``: its actor messages and the store writer), so that
validating a job (``runtime.jobs.validate_job``, every CLI command's config check)
loads no event loop."""

from __future__ import annotations

from typing import TYPE_CHECKING

from shepherd.store.errors import ConfigError

if TYPE_CHECKING:
    from shepherd.store.models import JobSpec

__all__ = ["GATED_KINDS", "validate_approval"]

# the dispatch kinds a gate's ``sources`` may name (retries and crash replays are the
# same dispatch again, approved before its first attempt: never gated)
GATED_KINDS: tuple[str, ...] = ("enqueue", "schedule", "run_now", "chain", "spawn")


def validate_approval(spec: JobSpec) -> None:
    """ConfigError naming the field for a bad ``approval`` of a job spec: ``sources``
    must be known dispatch kinds, and the request needs somewhere to go (the job's
    ``options.delivery_to`` or ``options.delivery_channel``). Bounds: ``check_bounds``."""
    policy = spec.approval
    if policy is None or not policy.required:
        return
    if policy.sources is not None:
        if not policy.sources:
            raise ConfigError(
                "must name at least one dispatch kind (omit it for every kind but run_now)",
                field="approval.sources",
            )
        for i, kind in enumerate(policy.sources):
            if kind in ("retry", "replay"):
                raise ConfigError(
                    f"{kind!r} is never gated: retries and replays of an approved dispatch"
                    " are not asked again",
                    field=f"approval.sources[{i}]",
                )
            if kind not in GATED_KINDS:
                raise ConfigError(
                    f"unknown dispatch kind {kind!r}; expected one of {', '.join(GATED_KINDS)}",
                    field=f"approval.sources[{i}]",
                )
    to, channel = spec.options.get("delivery_to"), spec.options.get("delivery_channel")
    if not (isinstance(to, str) and to.strip()) and not (
        isinstance(channel, str) and channel.strip()
    ):
        raise ConfigError(
            "an approval request needs somewhere to go: set options.delivery_to (an alias"
            " like '@ops' or a target) or options.delivery_channel",
            field="options.delivery_to",
        )
