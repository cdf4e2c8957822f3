"""Schemathesis against the running service's own OpenAPI schema (management API and feedback).

Every generated request must get an answer in time, never a 5xx, and every 4xx must be JSON
`{"status_code", "detail"}` whose detail says what is wrong. Generation is derandomized, so a
run sends the same requests every time. Path names and decision ids are sometimes swapped for
real ones, so the fuzzer also reaches experiments that exist and rewards that get counted.
"""

from __future__ import annotations

import math
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

import httpx
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import APIOperation, Case, GenerationMode

from tests.conftest import experiment_body
from tests.servers import ADMIN_TOKEN, ModelServers, ServiceProcess

#: Generated requests per operation and generation mode (operations without inputs get one).
EXAMPLES = 50
CALL_TIMEOUT_S = 10.0
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
# A detail that only repeats the status line ("Not Found") does not say what is wrong.
STATUS_PHRASES = {status.phrase.lower() for status in HTTPStatus}
# Operations that answer with a stream that never ends (SSE) are not request/response fuzzing.
STREAMING_SUFFIXES = ("/events",)


@dataclass
class Outcomes:
    """What the fuzzer sent and got back."""

    calls: Counter[str] = field(default_factory=Counter)
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    # One detail per operation, mode and 4xx status, for the summary.
    details: dict[tuple[str, str, int], str] = field(default_factory=dict)
    rewards_accepted: int = 0
    # Input outside the schema that was taken anyway: Litestar converts leniently ("1.5" for 1.5,
    # "true" or 1 for true), and a batch answers 202 with its refused items listed.
    negative_accepted: int = 0
    slowest_s: float = 0.0


@dataclass
class KnownExperiments:
    """Real experiments the fuzzer's path names and decision ids are sometimes replaced with."""

    admin: httpx.Client
    bodies: dict[str, dict[str, Any]]
    decisions: list[str] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return list(self.bodies)

    def ensure(self, name: str) -> None:
        """Create `name` again if the fuzzer deleted it."""
        if self.admin.get(f"/api/experiments/{name}").status_code == 404:
            self.admin.post("/api/experiments", json=self.bodies[name]).raise_for_status()

    def collect_decisions(self, service: ServiceProcess, per_experiment: int = 30) -> None:
        self.decisions = []
        with httpx.Client(base_url=service.url, timeout=10) as client:
            for name in self.names:
                self.ensure(name)
                for _ in range(per_experiment):
                    response = client.post(f"/invoke/{name}/predict", json={"x": 1})
                    if "X-Bandit-Decision" in response.headers:
                        self.decisions.append(response.headers["X-Bandit-Decision"])
        assert len(self.decisions) >= per_experiment, "the known experiments made no decisions to reward"


def _operations(schema: Any) -> list[APIOperation]:
    """The management API and POST /feedback, feedback first (later operations reset and delete)."""
    operations = [result.ok() for result in schema.get_all_operations()]
    chosen = [
        op
        for op in operations
        if (op.path == "/feedback" or op.path.startswith("/api/experiments"))
        and not op.path.endswith(STREAMING_SUFFIXES)
    ]
    return sorted(chosen, key=lambda op: op.path != "/feedback")


def _label(operation: APIOperation) -> str:
    return f"{operation.method.upper()} {operation.path}"


def _substitute(case: Case, known: KnownExperiments, choice: int) -> None:
    """Point a valid case at a real experiment or real decisions (choice 0 keeps it as generated)."""
    if choice == 0:
        return
    if "name" in (case.path_parameters or {}):
        case.path_parameters["name"] = known.names[choice % len(known.names)]
    body = case.body
    if isinstance(body, dict) and isinstance(body.get("decision"), str):
        body["decision"] = known.decisions[choice % len(known.decisions)]
    if isinstance(body, dict) and isinstance(body.get("items"), list):
        for offset, item in enumerate(body["items"]):
            if isinstance(item, dict) and isinstance(item.get("decision"), str):
                item["decision"] = known.decisions[(choice + offset) % len(known.decisions)]


def _check_answer(label: str, mode: GenerationMode, case: Case, status: int, body: Any) -> None:
    where = f"{label} ({mode.value}) with path {case.path_parameters} body {case.body!r:.300}"
    assert status < 500, f"{where} answered {status}: {body}"
    if 400 <= status < 500:
        assert isinstance(body, dict) and body.get("status_code") == status, f"{where}: 4xx body {body!r}"
        detail = body.get("detail")
        assert isinstance(detail, str) and len(detail) >= 12, f"{where}: detail {detail!r} says too little"
        assert detail.strip().lower() not in STATUS_PHRASES, f"{where}: generic detail {detail!r}"
        assert not detail.startswith("Validation failed for"), f"{where}: detail names no field: {detail!r}"


def _fuzz(
    operation: APIOperation, mode: GenerationMode, known: KnownExperiments, service: ServiceProcess, seen: Outcomes
) -> None:
    label = _label(operation)
    strategy = st.tuples(operation.as_strategy(generation_mode=mode), st.integers(0, 3))

    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    @given(drawn=strategy)
    def run(drawn: tuple[Case, int]) -> None:
        case, choice = drawn
        if mode is GenerationMode.POSITIVE:
            _substitute(case, known, choice)
        started = time.perf_counter()
        response = case.call(base_url=service.url, headers=AUTH, timeout=CALL_TIMEOUT_S)
        seen.slowest_s = max(seen.slowest_s, time.perf_counter() - started)
        try:
            body = response.json()
        except ValueError:
            body = response.text
        seen.calls[f"{label} {mode.value}"] += 1
        seen.statuses[(label, response.status_code)] += 1
        if isinstance(body, dict) and response.status_code >= 400:
            seen.details.setdefault((label, mode.value, response.status_code), str(body.get("detail"))[:160])
        _check_answer(label, mode, case, response.status_code, body)
        if mode is GenerationMode.NEGATIVE and response.status_code < 400:
            seen.negative_accepted += 1
        if label == "POST /feedback" and response.status_code == 202:
            seen.rewards_accepted += int(body.get("accepted", 0))
        if label == "POST /api/experiments" and response.status_code == 201:
            # Created experiments are removed at once: their random upstreams must not be probed.
            known.admin.delete(f"/api/experiments/{body['name']}")
        if label == "DELETE /api/experiments/{name}" and case.path_parameters["name"] in known.bodies:
            known.ensure(case.path_parameters["name"])

    try:
        run()
    except Unsatisfiable:
        # A negative case needs a constraint to break: an operation whose only input is an
        # unconstrained string has none, and that is not a finding.
        assert mode is GenerationMode.NEGATIVE, f"no valid request could be generated for {label}"


def _finite_numbers(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite_numbers(v) for v in value.values())
    if isinstance(value, list):
        return all(_finite_numbers(v) for v in value)
    return True


def test_fuzzed_requests_get_no_5xx_and_every_4xx_says_why(
    service: ServiceProcess, models: ModelServers, admin: httpx.Client
) -> None:
    tag = uuid.uuid4().hex[:6]
    known = KnownExperiments(
        admin,
        {
            f"fuzz-bounded-{tag}": experiment_body(f"fuzz-bounded-{tag}", models),
            # Real-valued rewards without bounds: the one place a huge reward could poison the sums.
            f"fuzz-unbounded-{tag}": experiment_body(f"fuzz-unbounded-{tag}", models, reward={"bounds": None}),
        },
    )
    known.collect_decisions(service)
    schema = schemathesis.openapi.from_url(f"{service.url}/schema/openapi.json")
    operations = _operations(schema)
    seen = Outcomes()
    started = time.perf_counter()
    for operation in operations:
        has_input = "{" in operation.path or operation.method.upper() in ("POST", "PATCH")
        modes = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE] if has_input else [GenerationMode.POSITIVE]
        for mode in modes:
            _fuzz(operation, mode, known, service, seen)
    elapsed = time.perf_counter() - started

    total = sum(seen.calls.values())
    print(
        f"\nfuzzing: {total} calls over {len(operations)} operations in {elapsed:.1f} s, "
        f"slowest answer {seen.slowest_s * 1000:.0f} ms, rewards accepted {seen.rewards_accepted}, "
        f"negative cases answered below 400: {seen.negative_accepted}"
    )
    for (label, status), count in sorted(seen.statuses.items()):
        print(f"  {label}: {status} x{count}")
    for (label, mode, status), detail in sorted(seen.details.items()):
        print(f"  {label} {mode} {status}: {detail}")

    # Not vacuous: the whole API was reached, with real traffic, and deep enough to be accepted.
    labels = {_label(op) for op in operations}
    assert {"POST /feedback", "POST /api/experiments", "PATCH /api/experiments/{name}"} <= labels
    assert len(operations) >= 9, f"only {sorted(labels)} in the schema"
    assert total >= EXAMPLES * len(operations), f"only {total} calls were made"
    for operation in operations:
        if "{" in operation.path or operation.body:
            assert seen.calls[f"{_label(operation)} positive"] >= EXAMPLES // 2, _label(operation)
    accepted = {label for (label, status), _ in seen.statuses.items() if 200 <= status < 300}
    assert {
        "POST /api/experiments",
        "PATCH /api/experiments/{name}",
        "GET /api/experiments/{name}/stats",
    } <= accepted, f"fuzzed requests were accepted only by: {sorted(accepted)}"
    assert seen.rewards_accepted > 0, "no fuzzed reward was ever counted"
    # The schema describes the bodies well enough that most valid-by-schema ones are valid: a
    # schema that let unknown fields or mixed shapes through would have most of them refused.
    for label in ("POST /api/experiments", "POST /feedback"):
        taken = sum(n for (op, status), n in seen.statuses.items() if op == label and 200 <= status < 300)
        assert taken >= seen.calls[f"{label} positive"] // 4, f"{label}: only {taken} valid-by-schema bodies taken"

    # Whatever rewards were counted, the statistics stay finite numbers (JSON has no NaN: msgspec
    # would write null for one, which `reward_sum` must never be).
    for name in known.names:
        known.ensure(name)
        stats = admin.get(f"/api/experiments/{name}/stats").json()
        assert _finite_numbers(stats), stats
        assert all(isinstance(arm["reward_sum"], float | int) for arm in stats["arms"]), stats
