"""Simulated model versions: HTTP servers whose predictions succeed at a hidden rate.

Each response carries ``outcome`` (1 = the prediction turned out right), drawn with
the server's hidden reward rate; the traffic generator reports it as feedback, as a
client would report a click or a correct label.

    python -m loadtest.model_server --arm v1:0.04 --arm v2:0.05 --arm v3:0.07 [--control]

prints one JSON line {name: url} once every server listens. With --control it also
serves a control API on another loopback port and prints a second line {"control": url}:
`PUT /arms/{name}` with {"mode": "ok" | "error" | "slow", "delay_ms": N, "error_share": S, "health": bool}
switches how that version answers every path (/health too unless "health" is false), for
the fault-injection scenarios. The
control API has a port of its own so the proxy, which forwards any path to an arm's URL,
can never reach it.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import msgspec
import uvicorn

from bandit.cli.local_redis import free_port


@dataclass(frozen=True, slots=True)
class ModelSpec:
    name: str
    reward_rate: float
    port: int = 0
    latency_ms: float = 0.0

    @classmethod
    def parse(cls, text: str) -> ModelSpec:
        """NAME:RATE[:PORT[:LATENCY_MS]], e.g. v2:0.05 or v2:0.05:9002:3."""
        name, rate, *rest = text.split(":")
        port = int(rest[0]) if rest else 0
        latency = float(rest[1]) if len(rest) > 1 else 0.0
        return cls(name, float(rate), port, latency)


class Behaviour(msgspec.Struct, forbid_unknown_fields=True):
    """How a model version answers right now: normally, with 500s, or after a delay."""

    mode: Literal["ok", "error", "slow"] = "ok"
    delay_ms: float = 0.0
    # In "error" mode, the share of requests answered 500 (the others are answered normally).
    error_share: Annotated[float, msgspec.Meta(ge=0, le=1)] = 1.0
    # False: /health keeps answering normally, as a server whose model is broken but whose
    # process is fine would; only the proxy's passive checks can see the fault then.
    health: bool = True


class SimulatedModel:
    """ASGI app of one model version."""

    def __init__(self, spec: ModelSpec, seed: int | None = None) -> None:
        self.spec = spec
        self.random = random.Random(seed)
        self.behaviour = Behaviour()

    async def __call__(self, scope: dict[str, Any], receive: Callable[[], Any], send: Callable[..., Any]) -> None:
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        behaviour = self.behaviour
        if behaviour.mode != "ok" and (behaviour.health or path != "/health"):
            if behaviour.mode == "error":
                if self.random.random() < behaviour.error_share:
                    await _send_json(send, {"error": "injected fault", "model": self.spec.name}, 500)
                    return
            else:
                await asyncio.sleep(behaviour.delay_ms / 1000)
        if path == "/sink":
            await self._sink(receive, send)
            return
        if path.startswith("/stream/"):
            await self._stream(int(path.removeprefix("/stream/")), send)
            return
        if path.startswith("/slow/"):
            await asyncio.sleep(float(path.removeprefix("/slow/")) / 1000)
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        if scope["path"] == "/health":
            payload: dict[str, Any] = {"status": "ok", "model": self.spec.name}
        elif scope["path"].startswith("/echo"):
            # What arrived, for tests of the proxy's forwarding.
            payload = {
                "model": self.spec.name,
                "method": scope["method"],
                "raw_path": scope["raw_path"].decode("latin-1"),
                "query": scope["query_string"].decode("latin-1"),
                "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]],
                "body": b"".join(chunks).decode("latin-1"),
            }
        else:
            if self.spec.latency_ms:
                await asyncio.sleep(self.spec.latency_ms / 1000)
            outcome = int(self.random.random() < self.spec.reward_rate)
            payload = {"model": self.spec.name, "prediction": self.random.random(), "outcome": outcome}
        status = int(path.removeprefix("/status/")) if path.startswith("/status/") else 200
        await _send_json(send, payload, status)

    @staticmethod
    async def _sink(receive: Callable[[], Any], send: Callable[..., Any]) -> None:
        """Consume a body of any size chunk by chunk; answer its length and SHA-256."""
        digest = hashlib.sha256()
        size = 0
        while True:
            message = await receive()
            chunk = message.get("body", b"")
            digest.update(chunk)
            size += len(chunk)
            if not message.get("more_body", False):
                break
        await _send_json(send, {"bytes": size, "sha256": digest.hexdigest()})

    @staticmethod
    async def _stream(size: int, send: Callable[..., Any]) -> None:
        """Answer `size` bytes in 64 KiB chunks, without a Content-Length (chunked)."""
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        block = b"x" * 65536
        while size > 0:
            chunk = block[: min(size, len(block))]
            size -= len(chunk)
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _send_json(send: Callable[..., Any], payload: dict[str, Any], status: int = 200) -> None:
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class ControlApp:
    """ASGI app of the control API: `PUT /arms/{name}` sets that version's Behaviour."""

    def __init__(self, models: dict[str, SimulatedModel]) -> None:
        self.models = models

    async def __call__(self, scope: dict[str, Any], receive: Callable[[], Any], send: Callable[..., Any]) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        name = scope["path"].removeprefix("/arms/")
        model = self.models.get(name)
        if scope["method"] != "PUT" or not scope["path"].startswith("/arms/") or model is None:
            await _send_json(send, {"error": f"PUT /arms/NAME with NAME one of {sorted(self.models)}"}, 404)
            return
        try:
            model.behaviour = msgspec.json.decode(body, type=Behaviour)
        except msgspec.ValidationError as error:
            await _send_json(send, {"error": str(error)}, 422)
            return
        await _send_json(send, {"arm": name, **msgspec.structs.asdict(model.behaviour)})


def _server(app: Any, host: str, port: int) -> uvicorn.Server:
    return uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off"))


async def serve_models(
    specs: list[ModelSpec], host: str = "127.0.0.1", announce: bool = True, control: bool = False
) -> None:
    """Serve every model version (and with `control` the control API) from this process until cancelled."""
    servers = []
    urls = {}
    models = {spec.name: SimulatedModel(spec) for spec in specs}
    for spec in specs:
        port = spec.port or free_port()
        servers.append(_server(models[spec.name], host, port))
        urls[spec.name] = f"http://{host}:{port}"
    control_url = None
    if control:
        # Loopback whatever --host says: nobody but the scenario on this machine may inject faults.
        control_port = free_port()
        servers.append(_server(ControlApp(models), "127.0.0.1", control_port))
        control_url = f"http://127.0.0.1:{control_port}"
    tasks = [asyncio.create_task(server.serve()) for server in servers]
    while not all(server.started for server in servers):
        if any(task.done() for task in tasks):
            raise SystemExit("a model server failed to start")
        await asyncio.sleep(0.02)
    if announce:
        print(json.dumps(urls), flush=True)
        if control_url is not None:
            print(json.dumps({"control": control_url}), flush=True)
    await asyncio.gather(*tasks)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arm", action="append", required=True, type=ModelSpec.parse, help="NAME:RATE[:PORT[:MS]]")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--control", action="store_true", help="serve the fault-injection control API too")
    args = parser.parse_args(argv)
    try:
        asyncio.run(serve_models(args.arm, args.host, control=args.control))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
