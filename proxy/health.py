"""Health of each upstream as this process sees it: passive ejection plus an active probe.

Passive: after `failures_to_eject` consecutive failed requests an upstream is ejected
for a back-off period (doubling on each relapse, up to a cap); when the period ends it
is on probation: one request at a time is let through as a trial, its success clears the
record, its failure ejects it again for longer. One trial, not all the traffic that
arrives while the first answer is awaited: against an upstream that hangs until the read
timeout, every request sent meanwhile would fail.
Active: a background probe of each upstream's health path (see `HealthProber`) ejects an
upstream whose probe fails. A passing probe readmits an upstream at once when all it had
against it was failed connections (which the probe's own connection disproves), but not
when it answered real requests badly (5xx, read timeouts, broken responses): a health
path can pass while the model behind it fails, so that upstream must earn its way back
through probation.
Upstreams are keyed by base URL: one model server behind several experiments is one health.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import httpx

log = logging.getLogger("mab.proxy.health")

FAILURES_TO_EJECT = 3
FIRST_BACKOFF_S = 2.0
MAX_BACKOFF_S = 30.0
#: A trial on probation that has not been answered by then is taken as lost, and another is let through.
TRIAL_TIMEOUT_S = MAX_BACKOFF_S


@dataclass(slots=True)
class _Record:
    consecutive_failures: int = 0
    ejected_until: float = 0.0
    backoff_s: float = 0.0
    probe_failing: bool = False
    # Some failure since the last success came after the request reached the upstream.
    answered_badly: bool = False
    # When the trial request of a probation was sent; 0.0 when no trial is in flight.
    trial_sent_at: float = 0.0


class ArmHealth:
    """Per-upstream failure counts and ejections; every method is O(1) and does no I/O."""

    def __init__(
        self,
        failures_to_eject: int = FAILURES_TO_EJECT,
        first_backoff_s: float = FIRST_BACKOFF_S,
        max_backoff_s: float = MAX_BACKOFF_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.failures_to_eject = failures_to_eject
        self.first_backoff_s = first_backoff_s
        self.max_backoff_s = max_backoff_s
        self.clock = clock
        self._records: dict[str, _Record] = {}

    def sending(self, url: str) -> None:
        """A request is about to go to `url` (called between choosing it and the first await):
        on probation, it is the trial, and no other request goes there until it is answered."""
        record = self._records.get(url)
        if record is not None and self._on_probation(record):
            record.trial_sent_at = self.clock()

    def observe(self, url: str, failed: bool, connection_failed: bool = False) -> None:
        """Count one forwarded request's outcome; `connection_failed`: no connection could be made."""
        record = self._records.get(url)
        if not failed:
            if record is not None and not record.probe_failing:
                if record.ejected_until or record.consecutive_failures:
                    log.info("upstream %s healthy again", url)
                del self._records[url]
            elif record is not None:
                record.trial_sent_at = 0.0
            return
        if record is None:
            record = self._records[url] = _Record()
        record.consecutive_failures += 1
        record.answered_badly |= not connection_failed
        record.trial_sent_at = 0.0
        if record.consecutive_failures >= self.failures_to_eject and self.clock() >= record.ejected_until:
            # First ejection, or a relapse on probation: back off longer each time.
            record.backoff_s = min(self.max_backoff_s, record.backoff_s * 2 or self.first_backoff_s)
            record.ejected_until = self.clock() + record.backoff_s
            log.warning(
                "upstream %s ejected for %.0f s after %d consecutive failures",
                url,
                record.backoff_s,
                record.consecutive_failures,
            )

    def probed(self, url: str, ok: bool) -> None:
        """Take an active probe's verdict: a failing probe ejects, a passing one readmits (see above)."""
        record = self._records.get(url)
        if ok:
            if record is None:
                return
            if record.answered_badly:
                # The probe's own verdict is withdrawn; the passive ejection runs its course.
                record.probe_failing = False
                return
            log.info("upstream %s passed its health probe: readmitted", url)
            del self._records[url]
            return
        if record is None:
            record = self._records[url] = _Record()
        if not record.probe_failing:
            log.warning("upstream %s failed its health probe: ejected", url)
        record.probe_failing = True

    def is_healthy(self, url: str) -> bool:
        """May `url` take a request now (on probation: only while no trial is in flight)?"""
        record = self._records.get(url)
        if record is None:
            return True
        if self._ejected(record):
            return False
        if self._on_probation(record):
            return not record.trial_sent_at or self.clock() - record.trial_sent_at > TRIAL_TIMEOUT_S
        return True

    def state(self, url: str) -> str:
        """ "healthy", "ejected" (no traffic) or "probation" (trials again after a back-off)."""
        record = self._records.get(url)
        if record is None:
            return "healthy"
        if self._ejected(record):
            return "ejected"
        return "probation" if record.consecutive_failures else "healthy"

    def _ejected(self, record: _Record) -> bool:
        return record.probe_failing or self.clock() < record.ejected_until

    def _on_probation(self, record: _Record) -> bool:
        """Ejected once, back-off over, not yet cleared by a success."""
        return record.consecutive_failures >= self.failures_to_eject and not self._ejected(record)


class HealthProber:
    """Probes every upstream that has a health path, every `interval_s`, off the hot path (httpx)."""

    def __init__(self, health: ArmHealth, interval_s: float = 2.0, timeout_s: float = 1.0) -> None:
        self.health = health
        self.interval_s = interval_s
        self.timeout_s = timeout_s

    async def probe_all(self, client: httpx.AsyncClient, targets: Iterable[tuple[str, str]]) -> None:
        """Probe each (base url, health path) once, concurrently."""
        await asyncio.gather(*(self._probe(client, url, path) for url, path in set(targets)))

    async def _probe(self, client: httpx.AsyncClient, url: str, path: str) -> None:
        try:
            response = await client.get(url.rstrip("/") + path, timeout=self.timeout_s)
            ok = response.status_code < 400
        except (httpx.HTTPError, httpx.InvalidURL, ValueError):
            # A probe that cannot even be sent counts as failed: it must not end the whole round.
            ok = False
        self.health.probed(url, ok)

    async def run(self, targets: Callable[[], Iterable[tuple[str, str]]]) -> None:
        async with httpx.AsyncClient(trust_env=False, follow_redirects=False) as client:
            while True:
                try:
                    await self.probe_all(client, targets())
                except Exception:  # a probe must never stop the loop that readmits upstreams
                    log.exception("health probe round failed")
                await asyncio.sleep(self.interval_s)
