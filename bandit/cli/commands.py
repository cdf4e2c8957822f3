"""`mab serve`, `mab demo`, `mab rotate-secret`, and the management verbs of `bandit.cli.manage`."""

from __future__ import annotations

import argparse
import logging
import sys
from urllib.parse import urlsplit

import msgspec

from bandit.cli import manage
from bandit.cli.local_redis import answers, start_redis
from bandit.core.settings import Settings, SettingsError, load_settings

log = logging.getLogger("mab")


def _serve_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="interface to listen on (BANDIT_HOST, default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (BANDIT_PORT, default 8000)")
    parser.add_argument("--workers", type=int, help="worker processes (BANDIT_WORKERS, default 1)")
    parser.add_argument("--server", help="uvicorn or granian (BANDIT_SERVER, default uvicorn)")
    parser.add_argument("--redis-url", help="Redis URL (BANDIT_REDIS_URL, default redis://127.0.0.1:6379/0)")
    parser.add_argument(
        "--redis-cluster",
        action="store_true",
        default=None,
        help="the Redis URL names a node of a Redis Cluster (BANDIT_REDIS_CLUSTER)",
    )
    parser.add_argument(
        "--ack-replicas",
        type=int,
        help="answer feedback only once this many Redis replicas hold it (BANDIT_ACK_REPLICAS, default 0)",
    )
    parser.add_argument("--admin-token", help="bearer token of the management API (BANDIT_ADMIN_TOKEN)")
    parser.add_argument("--secret", help="HMAC key for decision ids (BANDIT_SECRET)")
    parser.add_argument("--refresh-interval", type=float, dest="refresh_interval_s", help="seconds between snapshots")
    parser.add_argument("--flush-interval", type=float, dest="flush_interval_s", help="seconds between flushes")
    parser.add_argument("--log-level", help="debug, info, warning (BANDIT_LOG_LEVEL)")
    parser.add_argument("--log-format", help="text, or json: a JSON object per line (BANDIT_LOG_FORMAT, default text)")


def _rotate_secret_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--redis-url", help="Redis URL (BANDIT_REDIS_URL, default redis://127.0.0.1:6379/0)")
    parser.add_argument("--redis-cluster", action="store_true", default=None, help="the URL names a Redis Cluster node")
    parser.add_argument(
        "--grace",
        type=float,
        dest="grace_s",
        metavar="SECONDS",
        help="seconds the previous key still verifies after the switch (default: the longest feedback window)",
    )
    parser.add_argument(
        "--activate-in",
        type=float,
        dest="activate_in_s",
        metavar="SECONDS",
        help="seconds until the new key signs, so every replica loads it first (default 10)",
    )


def _rotate_secret(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """`mab rotate-secret`: a new shared decision-id key for every replica (see bandit/store/keyring.py)."""
    from bandit.cli.rotate_secret import rotate_command

    try:
        settings = load_settings({"redis_url": args.redis_url, "redis_cluster": args.redis_cluster})
    except SettingsError as error:
        parser.error(str(error))
    return rotate_command(settings, args.grace_s, args.activate_in_s)


def ensure_redis(settings: Settings) -> Settings:
    """Start a local redis-server when none answers at the default URL; a URL the user gave is used as is."""
    parts = urlsplit(settings.redis_url)
    if settings.redis_url_given or settings.redis_cluster or answers(parts.hostname or "127.0.0.1", parts.port or 6379):
        return settings
    process, url = start_redis()
    log.warning("no Redis answered at %s: started redis-server (pid %d) at %s", settings.redis_url, process.pid, url)
    return msgspec.structs.replace(settings, redis_url=url, redis_url_given=True)


def serve(settings: Settings) -> None:
    """Run the service under the configured server (BANDIT_SERVER) until interrupted."""
    from bandit.cli.servers import run_server

    run_server(ensure_redis(settings))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="mab",
        description="Multi-armed-bandit experimentation proxy",
        epilog=manage.VERBS_EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    _serve_parser(commands.add_parser("serve", help="run the service"))
    demo = commands.add_parser("demo", help="Redis, three simulated model versions, the service and traffic")
    demo.add_argument("--port", type=int, default=8000)
    demo.add_argument("--duration", type=float, help="stop after this many seconds (default: until Ctrl-C)")
    demo.add_argument("--rate", type=float, default=300.0, help="requests per second of simulated traffic")
    _rotate_secret_parser(commands.add_parser("rotate-secret", help="rotate the decision-id key shared through Redis"))
    manage.add_commands(commands)
    args = parser.parse_args(argv)
    if args.command in manage.COMMANDS:  # a client of a running service: no logging set-up, no Redis
        sys.exit(manage.run(args))
    from bandit.cli.log_format import configure_logging

    configure_logging()  # text at INFO until the settings are read
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request would drown the demo

    if args.command == "demo":
        from bandit.cli.demo import run_demo

        sys.exit(run_demo(port=args.port, duration_s=args.duration, rate_per_s=args.rate))
    if args.command == "rotate-secret":
        sys.exit(_rotate_secret(parser, args))
    overrides = {k: v for k, v in vars(args).items() if k != "command"}
    try:
        settings = load_settings(overrides)
    except SettingsError as error:
        parser.error(str(error))
    configure_logging(settings)  # its format and level, for this process and every worker
    serve(settings)
