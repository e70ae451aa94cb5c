"""An example for the ``--help`` of each command (argparse epilog), keyed by the
command's path (``"jobs add"``), the same for each group of commands (``group_examples``:
the first example of each of its commands), and the first-run hint for a database that
does not exist yet. A test checks that every command and group has an example."""

from __future__ import annotations

import argparse

__all__ = ["EXAMPLES", "example_epilog", "first_run_hint", "group_examples"]

EXAMPLES: dict[str, str] = {
    "run": "shepherd --config shepherd.toml run\nshepherd run --exit-when-idle --for 10m\n"
    "shepherd run --http 127.0.0.1:8600 --log-format json",
    "demo": "shepherd demo --dir /tmp/shepherd-demo",
    "config init": "shepherd config init shepherd.toml",
    "completion": 'eval "$(shepherd completion bash)"        # in ~/.bashrc\n'
    "shepherd completion fish > ~/.config/fish/completions/shepherd.fish",
    "enqueue": "shepherd enqueue nightly --payload '{\"full\": true}' --priority high --delay 5m\n"
    'shepherd --url http://10.0.0.5:8600 --token "$OPS_TOKEN" enqueue nightly',
    "status": "shepherd status\nshepherd --tz Europe/Berlin status\n"
    "SHEPHERD_TOKEN=... shepherd --url http://127.0.0.1:8600 status   # a remote daemon",
    "doctor": "shepherd --database shepherd.db doctor",
    "runs list": "shepherd runs list --job nightly --status error --limit 20\n"
    "shepherd --url http://127.0.0.1:8600 runs list --limit 1000",
    "runs show": "shepherd runs show 42",
    "dlq list": "shepherd dlq list --job nightly\nshepherd --url http://127.0.0.1:8600 dlq list",
    "dlq retry": "shepherd dlq retry 17 18\nshepherd dlq retry --all --job nightly",
    "dlq purge": "shepherd dlq purge --older-than 7d",
    "jobs add": "shepherd jobs add nightly --executor shell --target 'backup.sh' \\\n"
    "    --cron '0 3 * * *' --tz Europe/Berlin --timeout 1h --retry-max-attempts 5\n"
    "shepherd jobs add --file jobs.toml",
    "jobs update": "shepherd jobs update nightly --cron '30 3 * * *' --idle-timeout none",
    "jobs enable": "shepherd jobs enable nightly",
    "jobs disable": "shepherd jobs disable nightly",
    "jobs run": "shepherd jobs run nightly --payload '{\"full\": true}'",
    "jobs next": "shepherd jobs next nightly -n 3",
    "jobs list": "shepherd jobs list",
    "jobs show": "shepherd jobs show nightly",
    "jobs rm": "shepherd jobs rm nightly",
    "jobs export": "shepherd jobs export -o jobs.toml\nshepherd jobs export nightly --format json",
    "cancel": "shepherd cancel 42\nshepherd cancel 42 --cascade   # and its chain dispatches",
    "approvals list": "shepherd approvals list --status pending --job deploy\n"
    "shepherd --url http://127.0.0.1:8600 approvals list --status pending",
    "approvals approve": "shepherd approvals approve 7 --by alice",
    "approvals reject": "shepherd approvals reject 7 --reason 'not during the freeze'",
    "jobs tree": "shepherd jobs tree\nshepherd jobs tree nightly --json",
    "backup": "shepherd backup /backups/shepherd-$(date +%F).db",
    "restore": "shepherd restore /backups/shepherd-2025-01-31.db --to shepherd.db",
    "msg send": "shepherd msg send --from ops --to main --kind fact 'disk at 91%'\n"
    "shepherd msg send --from planner --to main --kind spawn --file child-job.json",
    "msg inbox": "shepherd msg inbox main\nshepherd msg inbox main --all --json",
    "msg read": "shepherd msg read 12 13",
    "msg ack": "shepherd msg ack 12",
    "msg thread": "shepherd msg thread 12",
    "groups create": "shepherd groups create fanout --members a,b,c --timeout 10m --to @ops",
    "groups report": "shepherd groups report nightly-fanout a completed -m '12 files'\n"
    "shepherd groups report nightly-fanout b failed -m 'disk full'",
    "groups heartbeat": "shepherd groups heartbeat nightly-fanout c",
    "groups list": "shepherd groups list --status open",
    "groups show": "shepherd groups show nightly-fanout",
    "agents list": "shepherd agents list\nshepherd agents list --json",
    "agents show": "shepherd agents show coder",
    "agents add": "shepherd agents add coder --capabilities python,git --max-concurrent 2\n"
    "shepherd agents add gpu-box --capabilities gpu,cuda --policy on-demand --status sleeping",
    "agents update": "shepherd agents update coder --capabilities python,git,docs\n"
    "shepherd agents update coder --status offline   # its running runs are cancelled",
    "agents drain": "shepherd agents drain coder",
    "agents undrain": "shepherd agents undrain coder",
    "agents rm": "shepherd agents rm coder",
    "agents heartbeat": "shepherd agents heartbeat coder\n"
    "shepherd agents heartbeat gpu-box --status sleeping",
    "pause": "shepherd pause job nightly --reason 'gateway upgrade'\n"
    "shepherd pause pool db\nshepherd pause --all",
    "resume": "shepherd resume job nightly\nshepherd resume --all",
    "pauses": "shepherd pauses --json",
    "drain": "shepherd drain --timeout 5m   # then: shepherd resume --all",
    "spool enqueue": "shepherd spool enqueue --message 'summarise the inbox' --agent main",
    "spool status": "shepherd spool status",
    "spool rejected list": "shepherd spool rejected list",
    "spool rejected retry": "shepherd spool rejected retry NAME",
    "spool rejected purge": "shepherd spool rejected purge --all",
    "nodes": "shepherd nodes\nshepherd --database 'postgresql://db.internal/jobs' nodes --json",
    "db upgrade": "shepherd --database 'postgresql://db.internal/jobs?search_path=shepherd'"
    " db upgrade\nshepherd --database shepherd.db db upgrade --json",
    "import ocs": "shepherd import ocs ~/.openclaw/scheduler.db --dry-run\n"
    "shepherd import ocs ~/.openclaw/scheduler.db --partial --history 20 --json",
}


def example_epilog(path: str, rest: str) -> str:
    """``example:`` lines for the command at ``path``, then ``rest``."""
    text = EXAMPLES.get(path)
    if not text:
        return rest
    lines = "\n".join(f"  {line}" for line in text.splitlines())
    return f"example:\n{lines}\n\n{rest}"


def first_run_hint(database: str) -> str:
    return (
        f"{database} does not exist yet: run `shepherd run` (creates it) or "
        "`shepherd jobs add ...`; `--database PATH` or `--config PATH` chooses another file"
    )


def group_examples(root: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Give every group of commands under ``root`` (``jobs``, ``dlq``, ``spool rejected``)
    an ``example:`` epilog: the first example line of each of its commands (at most 6),
    so ``shepherd jobs --help`` shows some too. Returns ``root``."""

    def first(p: argparse.ArgumentParser) -> list[str]:
        subs = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:  # its first example, continuation lines (ending in \\) included
            _, found, rest = (p.epilog or "").partition("example:\n  ")
            command: list[str] = []
            for line in rest.splitlines() if found else ():
                command.append(line.strip())
                if not line.endswith("\\"):
                    break
            return ["\n    ".join(command)] if command else []
        lines = [line for child in dict.fromkeys(subs[0].choices.values()) for line in first(child)]
        if p is not root and lines and "example:\n  " not in (p.epilog or ""):
            p.formatter_class = argparse.RawDescriptionHelpFormatter
            shown = "\n".join(f"  {line}" for line in lines[:6])
            p.epilog = f"example:\n{shown}" + (f"\n\n{p.epilog}" if p.epilog else "")
        return lines[:1]

    first(root)
    return root
