"""Experiments in Redis: their configs, lifecycle, rollback history and change notices.

Every read-modify-write runs in a Lua script (:mod:`bandit.store.lua`); Redis errors
become :class:`StoreUnavailable` through :func:`bandit.store.connection.translate_redis_errors`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from bandit.core.errors import (
    ConcurrentUpdate,
    ExperimentExists,
    ExperimentNotFound,
    NothingToRollBack,
    TooManyExperiments,
    UnreadableExperiment,
)
from bandit.core.models import Experiment, ExperimentSpec
from bandit.core.payloads import AuditEntry
from bandit.store import keys
from bandit.store.connection import StoreClient, as_bytes_hash, as_text, translate_redis_errors
from bandit.store.lua import LuaScripts

log = logging.getLogger("mab.store")
_encode = msgspec.json.Encoder().encode
_decode_experiment = msgspec.json.Decoder(Experiment).decode
_MAX_UPDATE_ATTEMPTS = 8
PUBSUB_CLOSE_TIMEOUT_S = 2.0
#: Earlier settings kept per experiment for rollback.
CONFIG_HISTORY_KEPT = 20
#: Audit entries kept per experiment (Redis trims the stream to about this many).
AUDIT_ENTRIES_KEPT = 1000
#: `describe` of an update: the audit entry for the experiment it produced (None: nothing to log).
Describe = Callable[[Experiment], AuditEntry | None]


class LeaseLost(Exception):
    """An automatic change found its replica no longer holding the experiment's lease."""


class SettingsMoved(Exception):
    """An automatic change found other settings than those it judged: it is not made."""


@dataclass(frozen=True, slots=True)
class RoutingRecord:
    """One experiment's stored config (None: deleted) and counters hash, undecoded."""

    name: str
    config: bytes | None
    counters: dict[bytes, bytes]


def decode_experiment(name: str, raw: bytes | str) -> Experiment:
    """Decode a stored experiment; one stored under older, looser rules is named, not a 500."""
    try:
        return _decode_experiment(raw)
    except msgspec.ValidationError as error:
        raise UnreadableExperiment(
            detail=f"experiment {name!r} was stored under rules it no longer meets ({error}); "
            "delete it and create it again"
        ) from None


def _settings_of(experiment: Experiment) -> Any:
    """What an operator changes: everything but the bookkeeping fields an update always moves."""
    settings = msgspec.to_builtins(experiment)
    for field in ("version", "updated_at", "incarnation"):
        settings.pop(field, None)
    return settings


def _state_keys(name: str) -> list[str]:
    """An experiment's config, counters and latency histogram: KEYS of create_experiment.lua."""
    return [keys.config(name), keys.counters_hash(name), keys.latency_histogram(name)]


def _update_keys(name: str) -> list[str]:
    """KEYS of update_experiment.lua: the state keys, the config history, audit stream and lease."""
    return [*_state_keys(name), keys.config_history(name), keys.audit_log(name), keys.autopilot_lease(name)]


def _audit_json(entry: AuditEntry | None, version: int) -> bytes | str:
    return "" if entry is None else _encode(msgspec.structs.replace(entry, version=version))


def _logged_as(entry: AuditEntry) -> Describe:
    """A `Describe` that logs `entry` whatever the change wrote."""
    return lambda _updated: entry


def new_incarnation() -> str:
    return secrets.token_hex(4)


class ExperimentStore:
    """Reads and writes experiments in Redis."""

    def __init__(self, redis: StoreClient, scripts: LuaScripts) -> None:
        self._redis = redis
        self._scripts = scripts

    # -- experiments -------------------------------------------------------------
    async def create(self, spec: ExperimentSpec, max_experiments: int | None = None) -> Experiment:
        """Store a new experiment; ExperimentExists if the name is taken, TooManyExperiments past the limit."""
        now = time.time()
        experiment = Experiment(
            **msgspec.structs.asdict(spec), incarnation=new_incarnation(), created_at=now, updated_at=now
        )
        with translate_redis_errors():
            # The index lives in another cluster slot than the experiment's keys, so it is written
            # first, on its own; `list_all` ignores names whose config is missing. Should Redis fail
            # in between, the name stays reserved, and the client's retry of the create reuses it.
            await self._reserve(spec.name, max_experiments)
            entry = AuditEntry(at=now, actor="operator", action="created", reason="created through the API")
            created = await self._scripts.create_experiment(
                keys=[*_state_keys(spec.name), keys.audit_log(spec.name)],
                args=[_encode(experiment), experiment.incarnation, _audit_json(entry, 1), AUDIT_ENTRIES_KEPT],
            )
            if not created:
                raise ExperimentExists(spec.name)
            await self._redis.publish(keys.CHANGES_CHANNEL, spec.name)
        return experiment

    async def _reserve(self, name: str, limit: int | None) -> None:
        """Add `name` to the index, refusing a new name that would take the index past `limit`.

        SADD and SCARD run in one transaction, so each creation counts every creation before it:
        of racing creations only those that found room keep their name, and the limit holds.
        """
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.sadd(keys.EXPERIMENTS, name)
            pipe.scard(keys.EXPERIMENTS)
            added, count = await pipe.execute()
        if added and limit is not None and count > limit:
            await self._redis.srem(keys.EXPERIMENTS, name)
            raise TooManyExperiments(limit)

    async def get(self, name: str) -> Experiment:
        with translate_redis_errors():
            raw = await self._redis.get(keys.config(name))
        if raw is None:
            raise ExperimentNotFound(name)
        return decode_experiment(name, raw)

    async def list_all(self) -> list[Experiment]:
        with translate_redis_errors():
            names = sorted(as_text(n) for n in await self._redis.smembers(keys.EXPERIMENTS))
            async with self._redis.pipeline(transaction=False) as pipe:
                for name in names:
                    pipe.get(keys.config(name))
                configs = await pipe.execute()
        experiments = []
        for name, raw in zip(names, configs, strict=True):
            if raw is None:
                continue
            try:
                experiments.append(decode_experiment(name, raw))
            except UnreadableExperiment as error:
                # Listed experiments stay readable; this one can be deleted.
                log.warning("%s", error.detail, extra={"experiment": name})
        return experiments

    async def update(
        self,
        name: str,
        change: Callable[[Experiment], Experiment],
        *,
        reset_statistics: bool = False,
        describe: Describe | None = None,
    ) -> Experiment:
        """An operator's change: `change` applied to the stored experiment with compare-and-set,
        retried on a race, and logged in the audit stream as `describe` says, in the same step."""
        for _ in range(_MAX_UPDATE_ATTEMPTS):
            current = await self.get(name)
            changed = msgspec.structs.replace(change(current), changed_by="operator")
            outcome, updated = await self._write(current, changed, reset_statistics, describe, lease="")
            if outcome == 1:
                return updated
        raise ConcurrentUpdate(detail=f"experiment {name!r} kept changing during the update; retry")

    async def apply_automatic(
        self, judged: Experiment, changed: Experiment, entry: AuditEntry, lease: str
    ) -> Experiment:
        """An automatic change, made only if the settings are still those `judged` and `lease` still
        holds the experiment's lease (SettingsMoved, LeaseLost otherwise): once, on fresh data."""
        changed = msgspec.structs.replace(changed, changed_by=entry.actor)
        outcome, updated = await self._write(judged, changed, False, _logged_as(entry), lease=lease)
        if outcome == 0:
            raise SettingsMoved(judged.name)
        if outcome == -2:
            raise LeaseLost(judged.name)
        return updated

    async def _write(
        self,
        current: Experiment,
        changed: Experiment,
        reset_statistics: bool,
        describe: Describe | None,
        lease: str,
        history: str | None = None,
    ) -> tuple[int, Experiment]:
        """Write `changed` over `current` if it is still at its version (update_experiment.lua):
        the script's outcome and what was written. `history`: "pop" for a rollback, else the
        replaced settings are pushed when they differ."""
        name = current.name
        incarnation = new_incarnation() if reset_statistics else current.incarnation
        updated = msgspec.structs.replace(
            changed, version=current.version + 1, updated_at=time.time(), incarnation=incarnation
        )
        if history is None:
            history = "push" if _settings_of(changed) != _settings_of(current) else "keep"
        entry = describe(updated) if describe is not None else None
        with translate_redis_errors():
            outcome = await self._scripts.update_experiment(
                keys=_update_keys(name),
                args=[
                    str(current.version),
                    _encode(updated),
                    incarnation if reset_statistics else "",
                    history,
                    CONFIG_HISTORY_KEPT,
                    _audit_json(entry, updated.version),
                    AUDIT_ENTRIES_KEPT,
                    lease,
                ],
            )
            if outcome == -1:
                raise ExperimentNotFound(name)
            if outcome == 1:
                await self._redis.publish(keys.CHANGES_CHANNEL, name)
        return int(outcome), updated

    async def rollback(self, name: str) -> Experiment:
        """Restore the settings in place before the last change (statistics are kept).

        Each rollback goes one change further back, up to CONFIG_HISTORY_KEPT changes. Rolling
        back an automatic change holds the automatic actions until the experiment is resumed:
        otherwise the actor that made it would make it again at its next look.
        """
        for _ in range(_MAX_UPDATE_ATTEMPTS):
            current = await self.get(name)
            with translate_redis_errors():
                raw_previous = await self._redis.lindex(keys.config_history(name), 0)
            if raw_previous is None:
                raise NothingToRollBack(detail=f"experiment {name!r} has no earlier settings to roll back to")
            previous = decode_experiment(name, raw_previous)
            held = current.autopilot_held or current.changed_by != "operator"
            restored = msgspec.structs.replace(
                previous, autopilot_held=held and previous.automated(), changed_by="operator"
            )
            author = "" if current.changed_by == "operator" else f" by {current.changed_by}"
            hold = "; automatic actions held until resumed" if restored.autopilot_held else ""
            entry = AuditEntry(
                at=time.time(),
                actor="operator",
                action="rolled_back",
                reason=f"the change to version {current.version}{author} undone{hold}",
            )
            outcome, written = await self._write(current, restored, False, _logged_as(entry), lease="", history="pop")
            if outcome == 1:
                return written
        raise ConcurrentUpdate(detail=f"experiment {name!r} kept changing during the rollback; retry")

    async def delete(self, name: str) -> None:
        with translate_redis_errors():
            await self._redis.delete(
                keys.config_history(name),
                keys.audit_log(name),
                keys.autopilot_lease(name),
                keys.autopilot_verdict(name),
                keys.decision_log(name),
            )
            deleted = await self._redis.delete(*_state_keys(name))
            await self._redis.srem(keys.EXPERIMENTS, name)
            await self._redis.publish(keys.CHANGES_CHANNEL, name)
        if not deleted:
            raise ExperimentNotFound(name)

    # -- what routing reads ----------------------------------------------------------
    async def names(self) -> list[str]:
        """Every experiment's name, sorted (some may be reserved by a create still under way)."""
        with translate_redis_errors():
            return sorted(as_text(n) for n in await self._redis.smembers(keys.EXPERIMENTS))

    async def routing_records(self, names: Sequence[str]) -> list[RoutingRecord]:
        """The stored config and counters of each experiment, in one pipelined round trip.

        Raw, as Redis holds them: the proxy compares them to what it last built from, so an idle
        experiment costs no decoding.
        """
        with translate_redis_errors():
            async with self._redis.pipeline(transaction=False) as pipe:
                for name in names:
                    pipe.get(keys.config(name))
                    pipe.hgetall(keys.counters_hash(name))
                replies = await pipe.execute()
        return [
            RoutingRecord(name, replies[2 * index], as_bytes_hash(replies[2 * index + 1]))
            for index, name in enumerate(names)
        ]

    @contextlib.asynccontextmanager
    async def changes(self) -> AsyncIterator[Any]:
        """A pub/sub subscription to experiment change notifications."""
        pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(keys.CHANGES_CHANNEL)
            yield pubsub
        finally:
            # redis-py's close can wait forever for the socket to close (redis/redis-py#3941),
            # which would hold up a graceful shutdown: it gets a bounded time.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pubsub.aclose(), PUBSUB_CLOSE_TIMEOUT_S)  # type: ignore[no-untyped-call]

    # -- the audit log ---------------------------------------------------------------
    async def audit(self, name: str, limit: int) -> list[AuditEntry]:
        """The newest `limit` audit entries of `name`, oldest first (ExperimentNotFound if it does not exist)."""
        with translate_redis_errors():
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.exists(keys.config(name))
                pipe.xrevrange(keys.audit_log(name), count=limit)
                exists, replies = await pipe.execute()
        if not exists:
            raise ExperimentNotFound(name)
        entries = []
        for stream_id, fields in reversed(replies):
            raw = as_bytes_hash(fields).get(keys.AUDIT_ENTRY_FIELD.encode())
            if raw is None:
                continue
            try:
                entry = msgspec.json.decode(raw, type=AuditEntry)
            except msgspec.DecodeError:
                log.warning("unreadable audit entry %s skipped", as_text(stream_id), extra={"experiment": name})
                continue
            entries.append(msgspec.structs.replace(entry, id=as_text(stream_id)))
        return entries
