"""Each package says what it exports: `__all__` lists exactly its public names, as httpx checks its own."""

from __future__ import annotations

import importlib
import types

import pytest

PACKAGES = [
    "bandit",
    "bandit.core",
    "bandit.store",
    "bandit.api",
    "bandit.dashboard",
    "bandit.cli",
    "bandit.store.lua",
    "proxy",
    "proxy.clients",
    "policies",
]


@pytest.mark.parametrize("name", PACKAGES)
def test_all_lists_exactly_the_public_names(name: str) -> None:
    package = importlib.import_module(name)
    exported = package.__all__  # its order is ruff's (RUF022)
    assert len(set(exported)) == len(exported)
    for member in exported:
        assert hasattr(package, member), f"{name}.__all__ names {member!r}, which it does not have"
    public = {
        member
        for member, value in vars(package).items()
        if not member.startswith("_")
        and not isinstance(value, types.ModuleType)
        and member not in ("annotations", "TYPE_CHECKING")
    } | {member for member in exported if member.startswith("__")}
    assert public == set(exported), f"{name}: public but not exported {sorted(public - set(exported))}"
