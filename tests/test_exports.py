"""Each package says what it exports: `__all__` lists exactly its public names, as httpx checks its own."""

from __future__ import annotations

import importlib
import pkgutil
import types

import pytest

import bandit
import policies
import proxy


def _packages() -> list[str]:
    """Every package of the project, found by walking it: a new one cannot slip past."""
    found = [root.__name__ for root in (bandit, proxy, policies)]
    for root in (bandit, proxy, policies):
        found += [info.name for info in pkgutil.walk_packages(root.__path__, f"{root.__name__}.") if info.ispkg]
    return sorted(found)


PACKAGES = _packages()


def test_the_walk_finds_the_subpackages() -> None:
    assert {"bandit.core", "bandit.store", "bandit.store.lua", "proxy.clients"} <= set(PACKAGES)


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
