"""Health of each upstream as this process sees it: passive outlier detection plus an active probe.

Passive records are kept per (experiment, upstream URL), a `HealthKey`: what one experiment's
traffic meets never ejects the URL for another. A client can make a model server fail at will
(a request path it chokes on), so what it reaches must not take the server from experiments it
does not call. Two rules eject a key, after Envoy's outlier detection:

- Gateway failures (no connection could be made, or not in time): `FAILURES_TO_EJECT`
  consecutive ones eject at once. A client cannot cause them, so they are trusted quickly.
- Answers that went wrong (5xx, read timeouts, responses broken off): only their rate ejects,
  `ERROR_RATE_TO_EJECT` of at least `MIN_REQUESTS_IN_WINDOW` answers in the last
  `ERROR_WINDOW_S` (failed connections are not answers: they have the rule above). To eject an
  arm that way a client must send as many failing requests as the arm answers well in the
  window, and half that minimum at the very least (all of it on an idle arm): a handful is
  never enough. So that an arm which turns to failing nearly everything is not served for
  half a window first, the newest `FAST_BUCKETS` of the window are judged on their own as
  well: `FAST_ERROR_RATE` of at least `MIN_REQUESTS_IN_WINDOW` answers there ejects too (a
  client must then outnumber the arm's honest traffic nine to one, for those seconds).

An ejection lasts a back-off (doubling on each relapse, up to a cap); when it ends the key is on
probation: one request at a time is let through as a trial (`sending` marks it), its success
readmits the key, its failure ejects it again for longer. One trial, not all the traffic that
arrives while the first answer is awaited: against an upstream that hangs until the read
timeout, every request sent meanwhile would fail.

Active: a background probe of each upstream's health path (see `HealthProber`) judges the URL
for every experiment: while its probe fails, every key of that URL is ejected (a server whose
health path fails is down for everyone). A passing probe readmits at once the keys that only had
failed connections against them (the probe's own connection disproves those), but not those that
answered badly: a health path can pass while the model behind it fails, so such a key runs its
back-off and earns its way back through probation.

Cost: the proxy asks `is_healthy` for every request and tells `observe` each outcome, so every
method is O(1) amortised, does no I/O, and allocates a record only for a key it has not seen.
Records of keys that are healthy with an empty window are swept away once per window, so memory
follows the active keys, and at most `MAX_RECORDS` are kept whatever happens.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal

import httpx

log = logging.getLogger("mab.proxy.health")

#: What passive health is kept by: (experiment name, upstream base URL).
HealthKey = tuple[str, str]
HealthState = Literal["healthy", "ejected", "probation"]

#: Consecutive gateway failures (no connection made) that eject a key.
FAILURES_TO_EJECT = 3
#: Answers that went wrong are judged over the last `ERROR_WINDOW_S`, to a bucket: the window
#: slides a bucket at a time, so counting an answer touches one bucket whatever the traffic.
ERROR_WINDOW_S = 10.0
WINDOW_BUCKETS = 20
#: Fewer answers than this in the window are too few to judge: 19 crafted 5xx on an idle arm, or
#: a few among its own traffic, cannot eject it. Ten seconds gather them from an arm serving two
#: requests a second or more.
MIN_REQUESTS_IN_WINDOW = 20
#: The share of the window's answers that must have failed. An arm failing that much is ejected
#: once its failures have caught up with the successes still in its window: at its 20th answer
#: when nothing came before (a fifth of a second at 100 requests/s), but after up to half a window
#: when an arm serving well turns to failing everything (hence the fast rule below), and about a
#: whole one when it turns to failing half.
ERROR_RATE_TO_EJECT = 0.5
#: The fast rule: the newest two buckets (half a second to a second) alone, nearly all failed.
FAST_BUCKETS = 2
FAST_ERROR_RATE = 0.9
FIRST_BACKOFF_S = 2.0
MAX_BACKOFF_S = 30.0
#: A trial on probation that has not been answered by then is taken as lost, and another is let through.
TRIAL_TIMEOUT_S = MAX_BACKOFF_S
#: Experiments and their arms are a bounded set; this only bounds memory should that ever fail.
MAX_RECORDS = 10_000


@dataclass(slots=True)
class _Window:
    """Answers and failed answers per bucket, the bucket of `epoch` the newest, with their totals."""

    epoch: int
    answers: list[int] = field(default_factory=lambda: [0] * WINDOW_BUCKETS)
    errors: list[int] = field(default_factory=lambda: [0] * WINDOW_BUCKETS)
    total_answers: int = 0
    total_errors: int = 0

    def count(self, epoch: int, failed: bool) -> None:
        if epoch > self.epoch:
            self._slide(epoch)
        slot = epoch % WINDOW_BUCKETS
        self.answers[slot] += 1
        self.total_answers += 1
        if failed:
            self.errors[slot] += 1
            self.total_errors += 1

    def newest(self, buckets: int) -> tuple[int, int]:
        """Answers and failed answers in the newest `buckets` buckets (the newest is `self.epoch`'s)."""
        slots = [(self.epoch - back) % WINDOW_BUCKETS for back in range(buckets)]
        return sum(self.answers[slot] for slot in slots), sum(self.errors[slot] for slot in slots)

    def empty_at(self, epoch: int) -> bool:
        """Is no answer left in the window once it has slid to `epoch`?"""
        return not self.total_answers or epoch - self.epoch >= WINDOW_BUCKETS

    def _slide(self, epoch: int) -> None:
        """Empty the buckets that have left the window by `epoch` (at most all of them, once each)."""
        for expired in range(self.epoch + 1, min(epoch, self.epoch + WINDOW_BUCKETS) + 1):
            slot = expired % WINDOW_BUCKETS
            self.total_answers -= self.answers[slot]
            self.total_errors -= self.errors[slot]
            self.answers[slot] = self.errors[slot] = 0
        self.epoch = epoch


@dataclass(slots=True)
class _Record:
    window: _Window
    consecutive_gateway_failures: int = 0
    # Ejected, and not readmitted since: ejected until `ejected_until`, then on probation.
    tripped: bool = False
    ejected_until: float = 0.0
    backoff_s: float = 0.0
    # Some answer went wrong in this ejection (its cause, or a failed trial): no readmission by probe.
    answered_badly: bool = False
    # How many probes of the URL had passed when it was last ejected: any later pass disproves
    # an ejection for failed connections.
    probe_passes_at_ejection: int = 0
    # When the trial request of a probation was sent; 0.0 when no trial is in flight.
    trial_sent_at: float = 0.0


class ArmHealth:
    """Passive ejections per (experiment, url) and probe verdicts per url; not thread-safe."""

    def __init__(
        self,
        *,
        failures_to_eject: int = FAILURES_TO_EJECT,
        error_window_s: float = ERROR_WINDOW_S,
        min_requests_in_window: int = MIN_REQUESTS_IN_WINDOW,
        error_rate_to_eject: float = ERROR_RATE_TO_EJECT,
        first_backoff_s: float = FIRST_BACKOFF_S,
        max_backoff_s: float = MAX_BACKOFF_S,
        max_records: int = MAX_RECORDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.failures_to_eject = failures_to_eject
        self.error_window_s = error_window_s
        self.min_requests_in_window = min_requests_in_window
        self.error_rate_to_eject = error_rate_to_eject
        self.first_backoff_s = first_backoff_s
        self.max_backoff_s = max_backoff_s
        self.max_records = max_records
        self.clock = clock
        self._buckets_per_s = WINDOW_BUCKETS / error_window_s
        self._fewest_errors_to_eject = min_requests_in_window * min(error_rate_to_eject, FAST_ERROR_RATE)
        # Oldest first, for the cap.
        self._records: OrderedDict[HealthKey, _Record] = OrderedDict()
        # Probe verdicts by URL: one entry per URL ever probed, a set the configuration bounds.
        self._failing_probes: set[str] = set()
        self._probe_passes: dict[str, int] = {}
        self._next_sweep_at = 0.0

    @property
    def record_count(self) -> int:
        """How many keys have a record (the others are healthy, if their probe passes)."""
        return len(self._records)

    def sending(self, key: HealthKey) -> None:
        """A request is about to go to `key` (called between choosing it and the first await):
        on probation, it is the trial, and no other request goes there until it is answered."""
        record = self._records.get(key)
        if record is not None and record.tripped:
            now = self.clock()
            if self._standing(key, record, now) == "probation":
                record.trial_sent_at = now

    def abandon(self, key: HealthKey) -> None:
        """A request `sending` announced got no verdict (its client failed or left): if it was a
        probation trial, the next request may be one, rather than none for TRIAL_TIMEOUT_S."""
        record = self._records.get(key)
        if record is not None:
            record.trial_sent_at = 0.0

    def observe(self, key: HealthKey, failed: bool, connection_failed: bool = False) -> None:
        """Count one forwarded request's outcome; `connection_failed`: no connection could be made."""
        now = self.clock()
        if now >= self._next_sweep_at:
            self._sweep(now)
        record = self._records.get(key)
        if record is not None and record.tripped:
            if self._standing(key, record, now) != "healthy":
                self._judge_while_tripped(key, record, now, failed, connection_failed)
                return
            record = None  # just readmitted by a probe: counted afresh
        if record is None:
            record = self._track(key, now)
        if connection_failed:
            record.consecutive_gateway_failures += 1
            if record.consecutive_gateway_failures >= self.failures_to_eject:
                self._eject(key, record, now, f"{record.consecutive_gateway_failures} consecutive failed connections")
            return
        # An answer, good or bad, proves a connection could be made.
        record.consecutive_gateway_failures = 0
        window = record.window
        window.count(self._epoch(now), failed)
        # Cheap first: fewer errors than either rule needs at its minimum volume.
        if not failed or window.total_errors < self._fewest_errors_to_eject:
            return
        if (
            window.total_answers >= self.min_requests_in_window
            and window.total_errors >= self.error_rate_to_eject * window.total_answers
        ):
            reason = f"{window.total_errors} of {window.total_answers} answers failed in {self.error_window_s:.0f} s"
        else:
            answers, errors = window.newest(FAST_BUCKETS)
            if answers < self.min_requests_in_window or errors < FAST_ERROR_RATE * answers:
                return
            reason = f"{errors} of the last {answers} answers failed"
        record.answered_badly = True
        self._eject(key, record, now, reason)

    def probed(self, url: str, ok: bool) -> None:
        """Take an active probe's verdict on `url`, for every experiment (see above)."""
        if ok:
            self._probe_passes[url] = self._probe_passes.get(url, 0) + 1
            if url in self._failing_probes:
                self._failing_probes.discard(url)
                log.info("upstream %s passed its health probe again", url, extra={"upstream": url})
        elif url not in self._failing_probes:
            self._failing_probes.add(url)
            log.warning(
                "upstream %s failed its health probe: ejected for every experiment", url, extra={"upstream": url}
            )

    def is_healthy(self, key: HealthKey) -> bool:
        """May `key` take a request now (on probation: only while no trial is in flight)?"""
        if key[1] in self._failing_probes:
            return False
        record = self._records.get(key)
        if record is None or not record.tripped:
            return True
        now = self.clock()
        standing = self._standing(key, record, now)
        if standing == "probation":
            return not record.trial_sent_at or now - record.trial_sent_at > TRIAL_TIMEOUT_S
        return standing == "healthy"

    def state(self, key: HealthKey) -> HealthState:
        """ "healthy", "ejected" (no traffic) or "probation" (trials again after a back-off)."""
        if key[1] in self._failing_probes:
            return "ejected"
        record = self._records.get(key)
        if record is None or not record.tripped:
            return "healthy"
        return self._standing(key, record, self.clock())

    def _standing(self, key: HealthKey, record: _Record, now: float) -> HealthState:
        """Where a tripped record stands by its back-off, readmitting it if a probe disproved it."""
        if not record.answered_badly and self._probe_passes.get(key[1], 0) > record.probe_passes_at_ejection:
            log.info(
                "upstream %s of %s passed its health probe: readmitted",
                key[1],
                key[0],
                extra={"experiment": key[0], "upstream": key[1]},
            )
            del self._records[key]
            return "healthy"
        return "ejected" if now < record.ejected_until else "probation"

    def _judge_while_tripped(
        self, key: HealthKey, record: _Record, now: float, failed: bool, connection_failed: bool
    ) -> None:
        """An outcome while ejected or on probation. Past the back-off it is a trial's (or counts as
        one); before, it belongs to a request sent before the ejection: its success does not cut
        the back-off short, and a bad answer only rules out a readmission by probe."""
        record.trial_sent_at = 0.0
        record.answered_badly |= failed and not connection_failed
        if now < record.ejected_until:
            return
        if failed:
            self._eject(key, record, now, "failed on probation")
        else:
            log.info(
                "upstream %s of %s healthy again", key[1], key[0], extra={"experiment": key[0], "upstream": key[1]}
            )
            del self._records[key]

    def _eject(self, key: HealthKey, record: _Record, now: float, reason: str) -> None:
        # First ejection, or a relapse on probation: back off longer each time.
        record.backoff_s = min(self.max_backoff_s, record.backoff_s * 2 or self.first_backoff_s)
        record.ejected_until = now + record.backoff_s
        record.tripped = True
        record.probe_passes_at_ejection = self._probe_passes.get(key[1], 0)
        log.warning(
            "upstream %s of %s ejected for %.0f s: %s",
            key[1],
            key[0],
            record.backoff_s,
            reason,
            extra={"experiment": key[0], "upstream": key[1]},
        )

    def _track(self, key: HealthKey, now: float) -> _Record:
        """A fresh record for `key`, the oldest dropped if there are too many."""
        if len(self._records) >= self.max_records:
            self._records.popitem(last=False)
        record = _Record(_Window(self._epoch(now)))
        self._records[key] = record
        return record

    def _sweep(self, now: float) -> None:
        """Drop the records with nothing against them and an empty window: once per window, so
        each record is visited once per window it lives through."""
        self._next_sweep_at = now + self.error_window_s
        epoch = self._epoch(now)
        idle = [
            key
            for key, record in self._records.items()
            if not record.tripped and not record.consecutive_gateway_failures and record.window.empty_at(epoch)
        ]
        for key in idle:
            del self._records[key]

    def _epoch(self, now: float) -> int:
        """The number of the window bucket `now` falls in."""
        return int(now * self._buckets_per_s)


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
