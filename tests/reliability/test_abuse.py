"""Hostile clients against a real `mab serve`: each attack of the adversarial pass, what the
service does now, and that an honest client of another experiment keeps its latency meanwhile.

The rows (A, D, E, F, G) are those of RELIABILITY.md's attack table; the head-size, head
timeout and upgrade rows (B, C, and G's WebSocket) are in tests/test_server_limits.py, the
events-stream cap and the pages' headers (G) in tests/dashboard/, what a client could make the
service hold (slots, connections, memory) in tests/reliability/test_abuse_holds.py. Every test prints the honest
client's latency during its attack (`-s` shows them).
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.conftest import ADMIN_TOKEN
from tests.reliability.raw_http import read_answer
from tests.servers import ModelServers, ServiceProcess

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
#: What an honest request on another experiment may take while an attack runs, on this 2-core
#: machine shared with the attackers (~3 ms unloaded): its p95, and its worst. Generous on purpose
#: (a noisy machine must not fail them): the unfixed service made such requests wait for the
#: upstream pool (~26 s) or behind a parse (~3 s).
HONEST_P95_S = 0.5
HONEST_MAX_S = 2.0
IDLE_TIMEOUT_S = 2
TOTAL_TIMEOUT_S = 8
STREAMED_PER_ARM = 4


@pytest.fixture(scope="module", params=["uvicorn", "granian"])
def hardened(request: pytest.FixtureRequest, clean_test_db: str, models: ModelServers) -> Iterator[ServiceProcess]:
    """A service with default protections, short body timeouts and a small cap on streamed uploads."""
    service = ServiceProcess(
        clean_test_db,
        BANDIT_SERVER=request.param,
        BANDIT_LOG_LEVEL="info",
        BANDIT_BODY_IDLE_TIMEOUT=str(IDLE_TIMEOUT_S),
        BANDIT_ARM_MAX_STREAMED_UPLOADS=str(STREAMED_PER_ARM),
        BANDIT_BODY_TIMEOUT=str(TOTAL_TIMEOUT_S),
        # The default: no feedback token, feedback not opened.
        BANDIT_FEEDBACK_OPEN="",
    )
    service.log_path.unlink(missing_ok=True)  # a fresh log, for the check below
    service.start()
    yield service
    service.stop()
    # Every attack of the module was answered: none crashed a handler.
    assert "Traceback" not in service.log_path.read_text()


def create(service: ServiceProcess, models: ModelServers, name: str, **extra: object) -> None:
    arms = [{"name": arm, "url": url} for arm, url in models.urls.items()]
    body = {"name": name, "arms": arms, **extra}
    httpx.post(f"{service.url}/api/experiments", json=body, headers=ADMIN).raise_for_status()


@pytest.fixture
def two_experiments(hardened: ServiceProcess, models: ModelServers, name: str) -> tuple[str, str]:
    """(attacked, honest): two experiments on the same three model servers."""
    attacked, honest = f"{name}-attacked", f"{name}-honest"
    create(hardened, models, attacked)
    create(hardened, models, honest)
    return attacked, honest


#: Fewer honest requests than this say nothing of their latency.
MIN_HONEST_REQUESTS = 10


@dataclass
class HonestClient:
    """Sequential invokes of one experiment, their latencies and any failure."""

    url: str
    latencies: list[float] = field(default_factory=list)
    failures: Counter[int] = field(default_factory=Counter)
    # The arms that served it.
    arms: Counter[str] = field(default_factory=Counter)
    # Set once it has made MIN_HONEST_REQUESTS, and been served by `every_arm` arms if given.
    enough: asyncio.Event = field(default_factory=asyncio.Event)
    every_arm: int = 0

    async def run(self, stop: asyncio.Event) -> None:
        async with httpx.AsyncClient(timeout=30) as client:
            while not stop.is_set():
                started = time.perf_counter()
                response = await client.post(self.url, json={"features": [1]})
                self.latencies.append(time.perf_counter() - started)
                if response.status_code != 200:
                    self.failures[response.status_code] += 1
                else:
                    self.arms[response.headers["X-Bandit-Arm"]] += 1
                if len(self.latencies) >= MIN_HONEST_REQUESTS and len(self.arms) >= self.every_arm:
                    self.enough.set()
                await asyncio.sleep(0.02)

    def report(self, attack: str) -> str:
        ordered = sorted(self.latencies)
        p50 = statistics.median(ordered) * 1000
        p95 = ordered[int(0.95 * (len(ordered) - 1))] * 1000
        worst = ordered[-1] * 1000
        return (
            f"{attack}: honest client {len(ordered)} requests, p50 {p50:.1f} ms, p95 {p95:.1f} ms, max {worst:.1f} ms"
        )

    def check(self, attack: str) -> None:
        print(self.report(attack))
        assert len(self.latencies) >= MIN_HONEST_REQUESTS, self.report(attack)
        assert not self.failures, (attack, self.failures)
        ordered = sorted(self.latencies)
        assert ordered[int(0.95 * (len(ordered) - 1))] < HONEST_P95_S, self.report(attack)
        assert ordered[-1] < HONEST_MAX_S, self.report(attack)


@contextlib.asynccontextmanager
async def honest_traffic(service: ServiceProcess, experiment: str, every_arm: int = 0) -> AsyncIterator[HonestClient]:
    """An honest client during the block; at its end it goes on (up to 5 s) until it has made
    MIN_HONEST_REQUESTS and, with `every_arm`, been served by that many arms: ten requests of a
    three-arm split miss an arm one time in a hundred or so."""
    honest = HonestClient(f"{service.url}/invoke/{experiment}/predict", every_arm=every_arm)
    stop = asyncio.Event()
    task = asyncio.create_task(honest.run(stop))
    try:
        yield honest
    finally:
        # An attack that ends quickly (a fast machine) still leaves enough honest requests to
        # judge: the last ones see the service as the attack left it.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(honest.enough.wait(), 5)
        stop.set()
        await task


async def _open_upload(
    service: ServiceProcess, path: str, declared: int
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A POST that declares `declared` bytes and sends the first one."""
    reader, writer = await asyncio.open_connection("127.0.0.1", service.port)
    head = f"POST {path} HTTP/1.1\r\nHost: mab\r\nContent-Type: application/json\r\nContent-Length: {declared}\r\n\r\n"
    writer.write(head.encode() + b"[")
    await writer.drain()
    return reader, writer


async def _status(reader: asyncio.StreamReader, timeout_s: float) -> int | None:
    """The status of the answer on `reader`, or None if none came within `timeout_s` (or the connection just closed)."""
    try:
        line = await asyncio.wait_for(reader.readline(), timeout_s)
    except (TimeoutError, ConnectionError):
        return None
    return int(line.split()[1]) if line.startswith(b"HTTP/1.1 ") else None


def _close(writers: list[asyncio.StreamWriter]) -> None:
    for writer in writers:
        writer.close()


# --- A: slow uploads -------------------------------------------------------------------------


async def test_a_slow_uploads_hold_no_upstream_connection(
    hardened: ServiceProcess, two_experiments: tuple[str, str]
) -> None:
    """540 uploads of 1 MB trickling in: the old pool of 512 upstream connections, shared by all
    experiments, ran dry. Bodies this small are read before an upstream is asked, so none is held."""
    attacked, honest = two_experiments
    uploads = await asyncio.gather(*(_open_upload(hardened, f"/invoke/{attacked}/sink", 1_000_000) for _ in range(540)))
    writers = [writer for _, writer in uploads]
    try:
        async with honest_traffic(hardened, honest) as client:
            for _ in range(3):  # trickle a byte each, faster than the idle timeout
                await asyncio.sleep(IDLE_TIMEOUT_S / 2)
                for writer in writers:
                    writer.write(b" ")
            async with httpx.AsyncClient(timeout=30) as other:
                # The attacked experiment itself still serves honest requests with small bodies.
                same = await other.post(f"{hardened.url}/invoke/{attacked}/predict", json={})
        client.check("A: 540 slow 1 MB uploads")
        assert same.status_code == 200
        # None was refused either: each still waits for its body, on its own connection only.
        answered = await asyncio.gather(*(read_answer(reader, 0.1) for reader, _ in uploads))
        assert not any(answered), {answer[:12] for answer in answered}
    finally:
        _close(writers)


async def test_a_large_slow_uploads_are_capped_per_arm(
    hardened: ServiceProcess, two_experiments: tuple[str, str]
) -> None:
    """Bodies too large to hold stream, but only STREAMED_PER_ARM at a time per arm: the rest are
    refused at once (503 + Retry-After), and neither experiment's small requests wait."""
    attacked, honest = two_experiments
    arms = 3
    declared = 4 * 1024 * 1024  # past BANDIT_BUFFER_BODY_BYTES (1 MiB)
    uploads = await asyncio.gather(*(_open_upload(hardened, f"/invoke/{attacked}/sink", declared) for _ in range(30)))
    writers = [writer for _, writer in uploads]
    try:
        async with honest_traffic(hardened, honest) as client, honest_traffic(hardened, attacked) as same:
            answers = await asyncio.gather(*(read_answer(reader, IDLE_TIMEOUT_S * 0.75) for reader, _ in uploads))
        refused = [answer for answer in answers if answer.startswith(b"HTTP/1.1 503")]
        assert len(refused) == 30 - arms * STREAMED_PER_ARM, [answer[:12] for answer in answers]
        assert all(
            b"BANDIT_ARM_MAX_STREAMED_UPLOADS" in answer and b"retry-after: 1" in answer.lower() for answer in refused
        )
        client.check("A: 30 slow 4 MiB uploads, other experiment")
        same.check("A: 30 slow 4 MiB uploads, same experiment")
    finally:
        _close(writers)


@pytest.mark.parametrize("declared", [1000, 4 * 1024 * 1024], ids=["read-first", "streamed"])
async def test_a_a_paused_body_is_answered_408_and_not_held_against_the_arm(
    hardened: ServiceProcess, two_experiments: tuple[str, str], declared: int
) -> None:
    attacked, _ = two_experiments
    # granian reads a small declared body in one call, which cannot see a pause: such a body has
    # the whole body's time (a documented limit); any other pauses no longer than the idle timeout.
    whole = declared <= 64 * 1024 and hardened.settings["BANDIT_SERVER"] == "granian"
    timeout_s, setting = (
        (TOTAL_TIMEOUT_S, b"BANDIT_BODY_TIMEOUT") if whole else (IDLE_TIMEOUT_S, b"BANDIT_BODY_IDLE_TIMEOUT")
    )
    reader, writer = await _open_upload(hardened, f"/invoke/{attacked}/sink", declared)
    started = time.monotonic()
    try:
        answer = await read_answer(reader, timeout_s + 3)
    finally:
        writer.close()
    waited = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert setting in answer
    assert timeout_s * 0.9 <= waited < timeout_s + 2
    async with httpx.AsyncClient(timeout=30) as client:
        stats = (await client.get(f"{hardened.url}/api/experiments/{attacked}/stats", headers=ADMIN)).json()
    # The client was slow, not the arm: no arm has an error or lost health for it.
    assert all(arm["errors"] == 0 and arm["health"] == "healthy" for arm in stats["arms"]), stats["arms"]


# --- D: sticky memory ------------------------------------------------------------------------


def _rss_bytes(service: ServiceProcess) -> int:
    """Resident memory of the process that serves (uvicorn: the service itself; granian: its worker)."""
    assert service.process is not None
    pids = [service.process.pid]
    children = Path(f"/proc/{service.process.pid}/task/{service.process.pid}/children")
    pids += [int(pid) for pid in children.read_text().split()]
    total = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) * 1024
    return total


async def test_d_long_unit_ids_cost_the_sticky_map_nothing_more(
    hardened: ServiceProcess, two_experiments: tuple[str, str]
) -> None:
    """300 unique 60 KiB unit ids (under the 64 KiB head limit) kept 18 MB for an hour when units
    were kept by their id; by digest they keep 300 × 256 B. A 256 KiB id is refused (431)."""
    attacked, honest = two_experiments
    invoke = f"{hardened.url}/invoke/{attacked}/predict"
    async with httpx.AsyncClient(timeout=30) as client:
        for warm in range(20):  # the allocator's first pages, before the figure is taken
            await client.post(invoke, json={}, headers={"X-Bandit-Unit": f"warm-{warm}-" + "u" * 60_000})
        before = _rss_bytes(hardened)
        async with honest_traffic(hardened, honest) as honest_client:
            for unit in range(300):
                answer = await client.post(invoke, json={}, headers={"X-Bandit-Unit": f"{unit}-" + "u" * 60_000})
                assert answer.status_code == 200
            try:
                huge: int | None = (
                    await client.post(invoke, json={}, headers={"X-Bandit-Unit": "u" * 256 * 1024})
                ).status_code
            except httpx.TransportError:
                huge = None  # refused and closed while the client was still sending it
        grown = _rss_bytes(hardened) - before
    print(f"D: 300 unique 60 KiB units: RSS +{grown / 1e6:.1f} MB (kept by id: +18 MB)")
    assert grown < 6_000_000
    # Refused: 431, or the connection closed under a client still sending the rest of its head (both
    # servers answer 431 and close at the limit; tests/test_server_limits.py reads that 431 off a socket).
    assert huge in (431, None), huge
    honest_client.check("D: 300 unique 60 KiB unit ids")


# --- E: ejection by crafted requests ----------------------------------------------------------


async def test_e_crafted_failures_eject_no_arm(
    hardened: ServiceProcess, models: ModelServers, two_experiments: tuple[str, str]
) -> None:
    """Requests whose path makes the model server answer 5xx: three of them used to eject the
    arm for every experiment on its URL. Encoded control characters are refused before any arm
    sees them; other paths that fail are too few to eject (the error rate needs volume), and
    what they count is kept apart per experiment."""
    attacked, honest = two_experiments
    async with httpx.AsyncClient(timeout=30) as client:
        async with honest_traffic(hardened, honest, every_arm=len(models.urls)) as honest_client:
            crlf = await client.post(f"{hardened.url}/invoke/{attacked}/predict%0d%0aX:%20y", json={})
            # All 19 on one arm (a sticky unit pins them): one fewer than the rate rule's minimum volume.
            pinned = {"X-Bandit-Unit": "attacker"}
            url = f"{hardened.url}/invoke/{attacked}/status/500"
            crafted = [await client.post(url, headers=pinned) for _ in range(19)]
            served: Counter[str] = Counter()
            for _ in range(150):
                answer = await client.post(f"{hardened.url}/invoke/{attacked}/predict", json={})
                assert answer.status_code == 200
                served[answer.headers["X-Bandit-Arm"]] += 1
        stats = (await client.get(f"{hardened.url}/api/experiments/{attacked}/stats", headers=ADMIN)).json()
    assert crlf.status_code == 400 and "control characters" in crlf.json()["detail"]
    assert [answer.status_code for answer in crafted] == [500] * 19
    assert len({answer.headers["X-Bandit-Arm"] for answer in crafted}) == 1
    # Every arm still serves both experiments.
    assert set(served) == set(models.urls) == set(honest_client.arms), (served, honest_client.arms)
    assert {arm["health"] for arm in stats["arms"]} == {"healthy"}
    honest_client.check("E: 19 requests the arms answer 500")


# --- F: steering by self-issued rewards -------------------------------------------------------


async def test_f_rewards_without_a_token_are_refused_and_steer_nothing(
    hardened: ServiceProcess, two_experiments: tuple[str, str]
) -> None:
    """With no feedback token configured, the default no longer lets anyone reward: 300 rewards
    for one's own decisions (1 for one arm, 0 for the others) are refused and move no traffic."""
    attacked, honest = two_experiments
    answers: Counter[int] = Counter()
    async with httpx.AsyncClient(timeout=30) as client:
        async with honest_traffic(hardened, honest) as honest_client:
            for _ in range(300):
                invoked = await client.post(f"{hardened.url}/invoke/{attacked}/predict", json={})
                reward = 1 if invoked.headers["X-Bandit-Arm"] == "v1" else 0
                decision = invoked.headers["X-Bandit-Decision"]
                posted = await client.post(f"{hardened.url}/feedback", json={"decision": decision, "reward": reward})
                answers[posted.status_code] += 1
        stats = (await client.get(f"{hardened.url}/api/experiments/{attacked}/stats", headers=ADMIN)).json()
    assert answers == {401: 300}
    assert sum(arm["rewards"] for arm in stats["arms"]) == 0
    # Thompson with no rewards keeps exploring every arm evenly: nobody was steered.
    shares = [arm["allocation"] for arm in stats["arms"]]
    assert all(0.2 < share < 0.47 for share in shares), shares
    honest_client.check("F: 300 self-issued rewards")


# --- G: headers the upstream sets, bytes a client sends ---------------------------------------


@contextlib.asynccontextmanager
async def forging_upstream() -> AsyncIterator[str]:
    """An upstream that answers every request with X-Bandit-* headers of its own."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while await reader.readuntil(b"\r\n\r\n"):
                body = b"{}"
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Bandit-Arm: forged\r\n"
                    b"X-Bandit-Decision: forged.decision\r\nContent-Length: 2\r\n\r\n" + body
                )
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}"


async def test_g_an_upstreams_own_bandit_headers_never_reach_the_client(hardened: ServiceProcess, name: str) -> None:
    async with forging_upstream() as url:
        body = {"name": name, "arms": [{"name": "only", "url": url}], "policy": {"kind": "static"}}
        async with httpx.AsyncClient(timeout=30) as client:
            (await client.post(f"{hardened.url}/api/experiments", json=body, headers=ADMIN)).raise_for_status()
            answer = await client.post(f"{hardened.url}/invoke/{name}/predict", json={})
    assert answer.status_code == 200
    assert answer.headers.get_list("x-bandit-arm") == ["only"]
    decisions = answer.headers.get_list("x-bandit-decision")
    assert len(decisions) == 1 and decisions[0] != "forged.decision"


def test_g_header_bytes_outside_ascii_are_refused_not_rewritten(
    hardened: ServiceProcess, two_experiments: tuple[str, str]
) -> None:
    """The upstream client takes header values as text, so a byte above 0x7f would reach the
    model re-encoded (é as two bytes): refused with 400 naming the header. granian leaves such
    a header out before the proxy sees it (a documented limit of its RSGI interface)."""
    attacked, _ = two_experiments
    with httpx.Client(timeout=30) as client:
        answer = client.post(
            f"{hardened.url}/invoke/{attacked}/echo", json={}, headers={"X-Label": "caf\xe9".encode("latin-1")}
        )
        echoed = client.post(f"{hardened.url}/invoke/{attacked}/echo", json={}, headers={"X-Label": "cafe"})
    if hardened.settings["BANDIT_SERVER"] == "granian":
        assert answer.status_code == 200 and "x-label" not in answer.text.lower()
    else:
        assert answer.status_code == 400 and "'x-label'" in answer.json()["detail"]
    assert echoed.status_code == 200 and "cafe" in echoed.text
