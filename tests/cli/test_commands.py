"""The command line: its commands, refusals of bad settings, and the local Redis it may start."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis as sync_redis

from bandit.cli.commands import ensure_redis
from bandit.cli.local_redis import answers, free_port, start_redis
from bandit.core.settings import load_settings
from tests.servers import ROOT


def mab(*args: str, **environ: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("BANDIT_")} | environ
    return subprocess.run(
        [sys.executable, "-m", "bandit", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=30
    )


def test_help_lists_every_command() -> None:
    result = mab("--help")
    assert result.returncode == 0
    for command in ("serve", "demo", "rotate-secret"):
        assert command in result.stdout


@pytest.mark.parametrize(
    ("args", "environ", "message"),
    [
        (["serve", "--workers", "0"], {}, "Setting 'workers' (BANDIT_WORKERS) must be >= 1"),
        (["serve"], {"BANDIT_PORT": "eighty"}, "invalid setting"),
        (["serve"], {"BANDIT_UPSTREAM_CLIENT": "curl"}, "invalid setting"),
        (["serve", "--redis-cluster"], {}, "BANDIT_REDIS_CLUSTER needs BANDIT_REDIS_URL naming a node"),
        (
            ["serve", "--redis-cluster", "--redis-url", "redis://127.0.0.1:7000/3"],
            {},
            "a Redis Cluster has only database 0",
        ),
        (["serve"], {"BANDIT_ACK_REPLICAS": "-1"}, "BANDIT_ACK_REPLICAS must be >= 0"),
        (["serve"], {"BANDIT_ACK_TIMEOUT": "0"}, "BANDIT_ACK_TIMEOUT > 0"),
        (["serve"], {"BANDIT_REDIS_CLUSTER": "maybe"}, "invalid setting"),
    ],
)
def test_bad_settings_stop_serve_with_the_setting_named(args: list[str], environ: dict[str, str], message: str) -> None:
    result = mab(*args, **environ)
    assert result.returncode == 2
    assert message in result.stderr


def test_a_redis_url_the_user_gave_is_used_as_it_is() -> None:
    given = load_settings({"redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    assert ensure_redis(given) is given  # nothing answers there, and no server is started in its place


def test_a_durable_local_redis_keeps_what_it_acknowledged_across_a_kill(tmp_path: Path) -> None:
    process, url = start_redis(workdir=tmp_path, durable=True)
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    try:
        client = sync_redis.Redis.from_url(url)
        client.set("kept", "yes")
        client.close()
        process.kill()
        process.wait(timeout=10)
        assert not answers("127.0.0.1", port)
        process, url = start_redis(port=port, workdir=tmp_path, durable=True)
        client = sync_redis.Redis.from_url(url)
        assert client.get("kept") == b"yes"
        client.close()
    finally:
        process.kill()
        process.wait(timeout=10)
