"""The sync Client against a real service: invoke, rewards, every management call and its refusals."""

from __future__ import annotations

from collections import Counter

import pytest

from bandit.cli.local_redis import free_port
from bandit.client import ApiError, Client, ClientError, Unreachable
from tests.client.conftest import counted, decisions
from tests.conftest import experiment_body
from tests.servers import ADMIN_TOKEN, ModelServers, ServiceProcess


def test_invoke_returns_the_models_answer_with_its_decision_and_arm(client: Client, experiment: str) -> None:
    invocation = client.invoke(experiment, "predict", json={"x": 1}, params={"q": "a b"})
    assert invocation.ok and invocation.served and invocation.status_code == 200
    assert invocation.experiment == experiment
    assert invocation.arm in {"v1", "v2", "v3"}
    assert invocation.decision is not None
    assert invocation.decision.startswith(f"{experiment}.{invocation.arm}.")
    assert invocation.json()["model"] == invocation.arm  # the simulated model says which version it is
    assert invocation.raise_for_status() is invocation


def test_a_unit_stays_on_one_version(client: Client, experiment: str) -> None:
    arms = {unit: {client.invoke(experiment, "predict", unit=unit).arm for _ in range(5)} for unit in "abcdefgh"}
    assert all(len(seen) == 1 for seen in arms.values()), arms
    # The units are not all on one arm merely because the policy sends everything there.
    anonymous = Counter(client.invoke(experiment, "predict").arm for _ in range(60))
    assert len(anonymous) > 1, anonymous


def test_a_reward_is_accepted_once_then_a_duplicate(client: Client, experiment: str) -> None:
    decision = decisions(client, experiment, 1)[0]
    first = client.reward(decision, 1)
    assert (first.accepted, first.duplicate, first.rejected, first.errors) == (1, 0, 0, [])
    again = client.reward(decision, 1)
    assert (again.accepted, again.duplicate, again.rejected) == (0, 1, 0)
    assert counted(client, experiment)["rewards"] == 1


def test_rewards_in_one_request_report_each_refusal_by_index(client: Client, experiment: str) -> None:
    good, other = decisions(client, experiment, 2)
    forged = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")
    result = client.rewards([(good, 1), (forged, 1), (other, 5)])  # 5 is outside the bounds [0, 1]
    assert (result.accepted, result.duplicate, result.rejected) == (1, 0, 2)
    assert [(error["index"], error["status"]) for error in result.errors] == [(1, 403), (2, 422)]
    assert not result.ok
    refused = client.reward(forged, 1)  # a single refused reward is reported too, not raised
    assert refused.rejected == 1 and refused.errors[0]["status"] == 403


def test_bad_input_is_refused_before_anything_is_sent(client: Client, experiment: str) -> None:
    with pytest.raises(ValueError, match="at most 1000"):
        client.rewards([("d", 1.0)] * 1001)
    with pytest.raises(ValueError, match="finite"):
        client.reward("d", float("nan"))
    with pytest.raises(ValueError, match="must be a number"):
        client.reward("d", "high")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="non-empty string"):
        client.reward("", 1)
    with pytest.raises(ValueError, match="not both"):
        client.invoke(experiment, json={}, content=b"{}")
    with pytest.raises(ValueError, match="http:// or https://"):
        Client("ftp://example.org")
    assert client.rewards([]).accepted == 0


def test_answers_of_mab_itself_on_invoke_carry_no_decision(client: Client, experiment: str) -> None:
    unknown = client.invoke("no-such-experiment", "predict")
    assert unknown.status_code == 404 and not unknown.served and not unknown.ok
    assert unknown.decision is None and unknown.arm is None
    with pytest.raises(ApiError) as raised:
        unknown.raise_for_status()
    assert raised.value.status == 404 and "does not exist" in raised.value.detail


def test_every_management_call(client: Client, models: ModelServers, name: str) -> None:
    created = client.create_experiment(experiment_body(name, models, policy={"kind": "thompson"}))
    assert created["name"] == name and created["status"] == "running"
    assert name in [experiment["name"] for experiment in client.list_experiments()]
    assert client.get_experiment(name)["policy"]["kind"] == "thompson"
    updated = client.update_experiment(name, {"policy": {"kind": "epsilon_greedy", "epsilon": 0.2}})
    assert updated["policy"]["kind"] == "epsilon_greedy"
    assert client.pause(name)["status"] == "paused"
    assert client.resume(name)["status"] == "running"
    assert client.promote(name, "v2")["status"] == "promoted"
    assert client.rollback(name)["status"] == "running"  # back to before the promotion
    assert client.rollback(name)["status"] == "paused"  # ... to before the resume
    stats = client.stats(name)
    assert stats["experiment"] == name and [arm["name"] for arm in stats["arms"]] == ["v1", "v2", "v3"]
    assert client.reset(name)["name"] == name
    client.delete_experiment(name)
    with pytest.raises(ApiError) as gone:
        client.get_experiment(name)
    assert gone.value.status == 404


def test_management_refusals_raise_api_error_with_status_and_detail(
    client: Client, service: ServiceProcess, models: ModelServers, experiment: str
) -> None:
    def refusal(call: object) -> ApiError:
        with pytest.raises(ApiError) as raised:
            call()  # type: ignore[operator]
        return raised.value

    with Client(service.url, token="") as anonymous:
        missing = refusal(anonymous.list_experiments)
    assert missing.status == 401 and "Bearer" in missing.detail
    with Client(service.url, token="wrong") as wrong:
        assert refusal(wrong.list_experiments).status == 403
    assert refusal(lambda: client.stats("no-such-experiment")).status == 404
    exists = refusal(lambda: client.create_experiment(experiment_body(experiment, models)))
    assert exists.status == 409 and "already exists" in exists.detail
    nothing = refusal(lambda: client.rollback(experiment))
    assert nothing.status == 409
    invalid = refusal(lambda: client.update_experiment(experiment, {"policy": {"kind": "ucb1", "c": "high"}}))
    assert invalid.status == 422 and "c" in invalid.detail
    assert isinstance(invalid.body, dict) and invalid.body["status_code"] == 422
    assert isinstance(invalid, ClientError) and str(invalid).startswith("422: ")
    needs_arm = refusal(lambda: client.promote(experiment))
    assert needs_arm.status == 422 and "`arm` is required" in needs_arm.detail


def test_a_service_that_is_not_listening_is_unreachable() -> None:
    with Client(f"http://127.0.0.1:{free_port()}", token="t", timeout=2) as client:
        with pytest.raises(Unreachable, match="could not reach the service"):
            client.list_experiments()
        with pytest.raises(Unreachable):
            client.invoke("any", "predict")
        with pytest.raises(Unreachable):
            client.reward("a.b.c", 1)


def test_the_url_and_tokens_come_from_the_environment(
    service: ServiceProcess, experiment: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BANDIT_URL", service.url)
    monkeypatch.setenv("BANDIT_ADMIN_TOKEN", ADMIN_TOKEN)
    monkeypatch.delenv("BANDIT_FEEDBACK_TOKEN", raising=False)
    with Client() as client:
        assert client.url == service.url
        assert client.get_experiment(experiment)["name"] == experiment
        assert client.endpoint.feedback_token == ADMIN_TOKEN  # feedback falls back on the admin token
    monkeypatch.setenv("BANDIT_FEEDBACK_TOKEN", "the-feedback-token")
    with Client() as client:
        assert client.endpoint.feedback_token == "the-feedback-token"


def test_tokens_never_reach_the_models(client: Client, experiment: str) -> None:
    echoed = client.invoke(experiment, "echo/x", method="PUT", content=b"raw", headers={"X-Trace": "1"}, unit="u1")
    arrived = dict(echoed.json()["headers"])
    assert "authorization" not in arrived  # the client holds the admin token, yet the model never sees it
    assert arrived["x-trace"] == "1" and arrived["x-bandit-unit"] == "u1"
    assert echoed.json()["method"] == "PUT" and echoed.json()["body"] == "raw"


def test_a_failed_answer_of_the_model_is_returned_with_its_decision(client: Client, experiment: str) -> None:
    failed = client.invoke(experiment, "status/500")
    assert failed.status_code == 500 and failed.served and not failed.ok
    assert failed.decision is not None  # a failure of the model can still be rewarded (with 0, say)
    with pytest.raises(ApiError) as raised:
        failed.raise_for_status()
    assert raised.value.status == 500
