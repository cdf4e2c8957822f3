"""What the HTTP surfaces ask of the routing side, as interfaces: the API and the dashboard never import
the proxy, and the composition root (:mod:`bandit.service`) hands them the proxy's objects, which
fit these shapes.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from bandit.core.models import Experiment


# Runtime-checkable: Litestar checks each injected dependency against its annotation.
@runtime_checkable
class Routing(Protocol):
    """This process's view of the experiments it routes (the proxy's snapshots)."""

    def experiment(self, name: str) -> Experiment | None:
        """The experiment as this process routes it now, if it knows it (no I/O)."""
        ...

    def experiments(self) -> list[Experiment]:
        """Every experiment this process routes."""
        ...

    async def refresh(self, name: str) -> None:
        """Re-read one experiment now (after this process changed it); raises StoreUnavailable."""
        ...

    def forget(self, name: str) -> None:
        """Stop routing an experiment that was deleted."""
        ...

    def note_rewarded(self, name: str) -> None:
        """Rewards were counted for `name`: its statistics should be re-read soon."""
        ...

    def snapshot_ages(self) -> dict[str, float]:
        """Seconds since each routed experiment's state was last read from Redis."""
        ...


@runtime_checkable
class HealthView(Protocol):
    """Each upstream's health for each experiment, as this process sees it."""

    def state(self, key: tuple[str, str]) -> str:
        """ "healthy", "probation" or "ejected", for `key` = (experiment, upstream URL)."""
        ...
