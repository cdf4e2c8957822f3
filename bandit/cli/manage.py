"""`mab apply | list | get | stats | pause | resume | promote | rollback | reset | delete`: a running service
from the command line, through `bandit.client`.

Tables for people, `--json` for scripts (the service's answer as it came); errors on stderr, and
an exit code a script can branch on (`EXIT_CODES`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Collection, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bandit.cli.manifest import load_manifests
from bandit.cli.plan import Action, Plan, make_plan

if TYPE_CHECKING:  # imported when a verb runs: `mab serve` needs no client
    from bandit.client import ApiError, Client

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2  # argparse's own code for a bad command line; a bad manifest is one too
EXIT_UNREACHABLE = 3

EXIT_CODES = """\
exit codes:
  0  done
  1  the service refused (its status and message on stderr): 401, 404, 409, 422, 503...
  2  a bad command line or a bad experiments file (nothing was changed)
  3  the service could not be reached (--url / BANDIT_URL)"""

#: For `mab --help`, where serve, demo and rotate-secret are listed too.
VERBS_EXIT_CODES = EXIT_CODES.replace("exit codes:", "exit codes of the management verbs (apply ... delete):", 1)

APPLY_DESCRIPTION = """\
Create or update the experiments TOML files describe: one [experiments.NAME] table each, holding
the body POST /api/experiments takes (docs/experiments.example.toml). Every file is checked as
the API checks a creation before anything is sent.

  - an experiment the service lacks is created;
  - one whose settings differ is PATCHed (arms, policy, reward, stopping): its statistics, status
    and rollback history are kept (but see traffic, below). A renamed table is a new experiment;
  - an experiment no file names is kept, and listed; with --prune it is deleted (the files are
    then the whole truth about the service). --prune with files that name nothing is refused.

Applying the same files twice changes nothing. Traffic: apply sends no pause, promote or resume,
but an update can still move traffic, and the plan says so (a "!" line, a note on the experiment):

  - `mab promote` of a static split (blue/green, canary) rewrites the split's weights, and those
    are settings of the file: the next apply restores the file's split, sending the traffic back.
    To keep a cut-over, write the new split into the file, or apply with --keep-traffic;
  - a file that changes a running experiment's policy from or to static moves its traffic: the
    split gives way to the learning policy (ending a cut-over of `mab promote`), or takes over;
  - an update that removes the promoted arm or makes it a shadow ends the promotion (the policy
    routes again), and one that changes a paused experiment's first serving arm moves its
    traffic to the new one.

With --keep-traffic no update moves live traffic: a static split keeps its live weights (the
file's are ignored) wherever the file has a static split over the same arms, and an update that
would otherwise move traffic (each other case above) is refused, before anything is sent. For a job
that applies on every merge while people cut over with `mab promote`.

Creations run before deletions, so that an apply stopped half-way never leaves fewer experiments
than before; at BANDIT_MAX_EXPERIMENTS a renaming --prune is refused until the old experiment is
deleted (the message says how)."""

#: The lifecycle verbs: the client's method of the same name, and what `--help` says of each.
LIFECYCLE = {
    "pause": "send all traffic to the control (first serving) arm until resumed",
    "resume": "hand routing back to the policy",
    "promote": "send all traffic to one arm (a static split: all weight to it)",
    "rollback": "restore the settings before the last change (statistics are kept)",
    "reset": "forget all statistics; feedback for earlier decisions is refused from then on",
}
COMMANDS = frozenset({"apply", "list", "get", "stats", "delete", "export", *LIFECYCLE})
_PAST = {"pause": "paused", "resume": "resumed", "promote": "promoted", "rollback": "rolled back", "reset": "reset"}

Handler = Callable[["Client", argparse.Namespace], int]


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The management verbs, as subcommands of `mab`."""
    service = argparse.ArgumentParser(add_help=False)
    options = service.add_argument_group("the service")
    options.add_argument("--url", help="where the service listens (BANDIT_URL, default http://127.0.0.1:8000)")
    options.add_argument(
        "--token", help="the admin bearer token (BANDIT_ADMIN_TOKEN, which keeps it out of the process list)"
    )
    options.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for each answer (default 10)")
    service.add_argument("--json", action="store_true", help="print the answer as JSON, for scripts")

    def verb(name: str, help_text: str, description: str | None = None) -> argparse.ArgumentParser:
        return commands.add_parser(
            name,
            help=help_text,
            description=description or help_text,
            parents=[service],
            epilog=EXIT_CODES,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    apply = verb("apply", "create or update the experiments TOML files describe", APPLY_DESCRIPTION)
    apply.add_argument(
        "-f", "--file", action="append", required=True, dest="files", metavar="FILE", help="a TOML file (repeatable)"
    )
    apply.add_argument("--dry-run", action="store_true", help="print what would change, change nothing")
    apply.add_argument(
        "--prune",
        action="store_true",
        help="also delete every experiment of the service that no file names (the dry run lists them)",
    )
    apply.add_argument(
        "--keep-traffic",
        action="store_true",
        help="leave live traffic as it is: static splits keep their live weights (a `mab promote` stays), "
        "and an update that would move traffic (a policy from or to static, the end of a promotion) is refused",
    )
    verb("list", "the experiments: status, policy, arms, version")
    verb("get", "one experiment's settings").add_argument("name")
    verb("stats", "one experiment's statistics per arm: decisions, rewards, P(best), latency").add_argument("name")
    for name, help_text in LIFECYCLE.items():
        parser = verb(name, help_text)
        parser.add_argument("name")
        if name == "promote":
            parser.add_argument("arm", nargs="?", help="the arm; omitted, the idle colour of a blue/green split")
    verb("delete", "delete an experiment and its statistics").add_argument("name")
    export = verb("export", "write an experiment's decision log as JSON lines (action, reward, propensity...)")
    export.add_argument("name")
    export.add_argument("-o", "--output", default="-", help="the file to write (default: standard output)")
    export.add_argument("--since", type=float, default=0.0, help="unix time (s) of the oldest decision exported")


def run(args: argparse.Namespace) -> int:
    """Run one verb; the exit code says how it went (`EXIT_CODES`)."""
    from bandit.client import ApiError, Client, Unreachable

    handler = _HANDLERS.get(args.command, _lifecycle)
    try:
        with Client(args.url, token=args.token, timeout=args.timeout) as client:
            return handler(client, args)
    except ValueError as error:  # a bad file (ManifestError), plan (PlanError), URL or name: nothing sent
        _complain(str(error))
        return EXIT_USAGE
    except ApiError as error:
        _complain(_refusal(error, args))
        return EXIT_REFUSED
    except Unreachable as error:  # it names the URL and the request
        _complain(str(error))
        return EXIT_UNREACHABLE


# -- the verbs -------------------------------------------------------------------------------------
def _apply(client: Client, args: argparse.Namespace) -> int:
    """The plan, then (unless a dry run) its calls in order, stopping at the first that fails.

    Every file is read and checked before the service is asked anything, so a bad file changes
    nothing. With --json one object is printed at the end: the plan, `dry_run`, `made`, how many
    of its changes were made, and `failed`, the action that stopped it (exit code 1 for a refusal,
    3 for a service out of reach).
    """
    from bandit.client import ApiError, Unreachable

    manifest = load_manifests(args.files)
    plan = make_plan(manifest.specs, client.list_experiments(), prune=args.prune, keep_traffic=args.keep_traffic)
    if not args.json:
        print(plan.describe())
    pending = [] if args.dry_run else plan.pending
    made, code, failed = 0, EXIT_OK, None
    for action in pending:
        try:
            _carry_out(client, action)
        except ApiError as error:
            _complain(f"{action.verb} {action.name}: {_refusal(error, args)}")
            if _at_the_limit(error, action) and plan.count("delete"):
                _complain(_deletions_first(plan))
            _complain(f"{made} of {len(pending)} changes made before it; apply again once it is fixed")
            code, failed = EXIT_REFUSED, action
            break
        except Unreachable as error:  # it names the URL and the request
            _complain(f"{action.verb} {action.name}: {error}")
            # A timeout may come after the service made the change: the next plan shows which it was.
            _complain(
                f"{made} of {len(pending)} changes made before it, and this one perhaps (no answer came); "
                "apply again once the service is reachable: the plan then shows what is left"
            )
            code, failed = EXIT_UNREACHABLE, action
            break
        made += 1
        if not args.json:
            print(f"{_PAST_APPLY[action.verb]} {action.name}")
    if args.json:
        stopped = None if failed is None else {"action": failed.verb, "experiment": failed.name}
        _print_json({**plan.to_json(), "dry_run": args.dry_run, "made": made, "failed": stopped})
    return code


def _at_the_limit(error: ApiError, action: Action) -> bool:
    """A creation refused for BANDIT_MAX_EXPERIMENTS (409, as for a taken name, which the detail tells apart)."""
    return action.verb == "create" and error.status == 409 and "BANDIT_MAX_EXPERIMENTS" in error.detail


def _deletions_first(plan: Plan) -> str:
    deletions = plan.named("delete")
    listed = ", ".join(deletions)
    one = "1 deletion is" if len(deletions) == 1 else f"{len(deletions)} deletions are"
    commands = " && ".join(f"mab delete {name}" for name in deletions)
    return (
        f"{one} pending ({listed}): apply runs them after the creations, so that a refused creation never "
        f"leaves fewer experiments than before; apply them first with `{commands}` and apply again, "
        "or raise BANDIT_MAX_EXPERIMENTS"
    )


_PAST_APPLY = {"create": "created", "update": "updated", "delete": "deleted"}


def _carry_out(client: Client, action: Action) -> None:
    if action.verb == "create":
        assert action.body is not None
        client.create_experiment(action.body)
    elif action.verb == "update":
        assert action.body is not None
        client.update_experiment(action.name, action.body)
    elif action.verb == "delete":
        client.delete_experiment(action.name)


def _list(client: Client, args: argparse.Namespace) -> int:
    experiments = client.list_experiments()
    if args.json:
        _print_json(experiments)
        return EXIT_OK
    rows = [
        [e["name"], _state(e), e["policy"]["kind"], _arm_names(e["arms"]), str(e["version"]), _time(e["updated_at"])]
        for e in sorted(experiments, key=lambda e: str(e["name"]))
    ]
    print(_table(["NAME", "STATUS", "POLICY", "ARMS", "VERSION", "UPDATED"], rows, right={4}))
    if not rows:
        print("(no experiments)")
    return EXIT_OK


def _get(client: Client, args: argparse.Namespace) -> int:
    experiment = client.get_experiment(args.name)
    if args.json:
        _print_json(experiment)
        return EXIT_OK
    print(f"{experiment['name']}: {_state(experiment)}, version {experiment['version']}, ", end="")
    print(f"created {_time(experiment['created_at'])}, updated {_time(experiment['updated_at'])}")
    for part in ("policy", "reward", "stopping"):
        print(f"  {part + ':':<10}{_settings(experiment[part])}")
    arms = experiment["arms"]
    columns = ["name", "url", "weight", "shadow", "mirror_percent", "connect_timeout_s", "read_timeout_s"]
    columns += ["health_path"]
    shown = [c for c in columns if c in ("name", "url") or any(arm.get(c) not in (None, False) for arm in arms)]
    rows = [[_cell(arm.get(column)) for column in shown] for arm in arms]
    print(_table([c.upper() for c in shown], rows, right={i for i, c in enumerate(shown) if c not in _TEXT}))
    return EXIT_OK


_TEXT = {"name", "url", "health_path", "shadow"}


def _stats(client: Client, args: argparse.Namespace) -> int:
    stats = client.stats(args.name)
    if args.json:
        _print_json(stats)
        return EXIT_OK
    stopping, totals = stats["stopping"], stats["totals"]
    rule = f"P(best) ≥ {stopping['p_best_threshold']:g}, expected loss ≤ {stopping['expected_loss_threshold']:g}"
    print(f"{stats['experiment']}: {stats['status']}, policy {stats['policy']}, leader {stats['leader'] or '-'}")
    print(f"  stopping rule ({rule}): {'met for ' + str(stopping['arm']) if stopping['met'] else 'not met'}")
    print(f"  {totals['decisions']} decisions, {totals['rewards']} rewards, reward sum {totals['reward_sum']:g}")
    headers = ["ARM", "HEALTH", "DECISIONS", "SHARE", "REWARDS", "MEAN", "95% INTERVAL", "P(BEST)", "EXP. LOSS"]
    headers += ["P50 MS", "P99 MS", "ERRORS"]
    rows = [
        [
            arm["name"] + (" (shadow)" if arm["shadow"] else ""),
            arm["health"],
            str(arm["decisions"]),
            f"{arm['allocation']:.1%}",
            str(arm["rewards"]),
            _number(arm["mean"], ".4f"),
            "[{:.3f}, {:.3f}]".format(*arm["interval"]) if arm["interval"] else "-",
            f"{arm['p_best']:.1%}",
            _number(arm["expected_loss"], ".4g"),
            _number(arm["latency_ms"]["p50"], ".1f"),
            _number(arm["latency_ms"]["p99"], ".1f"),
            str(arm["errors"]),
        ]
        for arm in stats["arms"]
    ]
    print(_table(headers, rows, right=set(range(2, len(headers)))))
    return EXIT_OK


def _lifecycle(client: Client, args: argparse.Namespace) -> int:
    name: str = args.name
    call = getattr(client, args.command)  # pause, resume, rollback, reset: the client's method of that name
    experiment = client.promote(name, args.arm) if args.command == "promote" else call(name)
    if args.json:
        _print_json(experiment)
    else:
        note = " (statistics forgotten; feedback for earlier decisions is refused)" if args.command == "reset" else ""
        print(f"{_PAST[args.command]} {name}{note}: {_state(experiment)}, version {experiment['version']}")
    return EXIT_OK


def _delete(client: Client, args: argparse.Namespace) -> int:
    client.delete_experiment(args.name)
    if args.json:
        _print_json({"deleted": args.name})
    else:
        print(f"deleted {args.name}")
    return EXIT_OK


def _export(client: Client, args: argparse.Namespace) -> int:
    """The decision log, line by line as it streams, to a file (written whole, or not at all) or stdout."""
    lines = client.export_log(args.name, args.since)
    if args.output == "-":
        for line in lines:
            print(line)
        return EXIT_OK
    target = Path(args.output)
    partial = target.with_name(target.name + ".partial")
    written = 0
    with partial.open("w", encoding="utf-8") as sink:
        for line in lines:
            sink.write(line + "\n")
            written += 1
    partial.replace(target)
    print(f"exported {written} decisions of {args.name} to {target}", file=sys.stderr)
    return EXIT_OK


_HANDLERS: dict[str, Handler] = {
    "apply": _apply,
    "list": _list,
    "get": _get,
    "stats": _stats,
    "delete": _delete,
    "export": _export,
}


# -- output ----------------------------------------------------------------------------------------
def _complain(message: str) -> None:
    for line in message.splitlines() or [""]:
        print(f"mab: {line}", file=sys.stderr)


def _refusal(error: ApiError, args: argparse.Namespace) -> str:
    message = f"refused by the service ({error.status}): {error.detail}"
    if error.status in (401, 403) and not (args.token or os.environ.get("BANDIT_ADMIN_TOKEN")):
        message += " (no admin token given: --token or BANDIT_ADMIN_TOKEN)"
    return message


def _print_json(value: object) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: Collection[int] = ()) -> str:
    """Columns as wide as their widest cell; `right` are the numeric columns' indices."""
    widths = [max(len(cell) for cell in column) for column in zip(headers, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        padded = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))]
        return "  ".join(padded).rstrip()

    return "\n".join(line(cells) for cells in [headers, *rows])


def _state(experiment: dict[str, Any]) -> str:
    """The lifecycle in words: where traffic goes when the policy does not decide."""
    status = experiment.get("status", "running")
    serving = [arm for arm in experiment["arms"] if not arm.get("shadow")]
    if status == "promoted":
        return f"promoted ({experiment.get('promoted_arm')} takes all traffic)"
    if status == "paused":
        return f"paused ({serving[0]['name']} takes all traffic)" if serving else "paused"
    policy = experiment["policy"]
    if policy.get("kind") == "static":
        weights = policy.get("weights") or [arm.get("weight", 1.0) for arm in experiment["arms"]]
        split = ", ".join(f"{arm['name']} {weight:g}" for arm, weight in zip(experiment["arms"], weights, strict=False))
        return f"running (static split: {split})"
    return str(status)


def _arm_names(arms: Sequence[dict[str, Any]]) -> str:
    return ", ".join(arm["name"] + (" (shadow)" if arm.get("shadow") else "") for arm in arms)


def _settings(settings: dict[str, Any]) -> str:
    return ", ".join(f"{key} {_cell(value)}" for key, value in settings.items() if value is not None)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


def _number(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _time(unix_s: float) -> str:
    return datetime.fromtimestamp(unix_s, UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if unix_s else "-"
