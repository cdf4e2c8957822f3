"""The Lua scripts, loaded from package data and registered once per Redis client."""

from __future__ import annotations

from importlib import resources

from redis.asyncio import Redis
from redis.commands.core import AsyncScript


def _source(name: str) -> str:
    return resources.files("bandit.lua").joinpath(f"{name}.lua").read_text(encoding="utf-8")


class Scripts:
    """Each script of ``bandit/lua`` as an EVALSHA callable (falling back to EVAL once)."""

    def __init__(self, redis: Redis) -> None:
        self.create_experiment: AsyncScript = redis.register_script(_source("create_experiment"))
        self.update_experiment: AsyncScript = redis.register_script(_source("update_experiment"))
        self.record_feedback: AsyncScript = redis.register_script(_source("record_feedback"))
        self.record_decisions: AsyncScript = redis.register_script(_source("record_decisions"))
