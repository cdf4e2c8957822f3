"""The Lua scripts of the store: one file per read-modify-write, each with a KEYS/ARGV header,
loaded from this package and registered once per Redis client."""

from __future__ import annotations

from importlib import resources
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: the package's namespace stays its one export
    from redis.commands.core import AsyncScript

    from bandit.store.connection import StoreClient

__all__ = ["LuaScripts"]


def _source(name: str) -> str:
    return resources.files(__name__).joinpath(f"{name}.lua").read_text(encoding="utf-8")


class LuaScripts:
    """Each script of this folder as an EVALSHA callable (falling back to EVAL once)."""

    def __init__(self, redis: StoreClient) -> None:
        self.create_experiment: AsyncScript = redis.register_script(_source("create_experiment"))
        self.update_experiment: AsyncScript = redis.register_script(_source("update_experiment"))
        self.record_feedback: AsyncScript = redis.register_script(_source("record_feedback"))
        self.record_decisions: AsyncScript = redis.register_script(_source("record_decisions"))
        self.read_decisions: AsyncScript = redis.register_script(_source("read_decisions"))
        self.hold_lease: AsyncScript = redis.register_script(_source("hold_lease"))
