"""`mab apply` and the management verbs against a real `mab serve`, refusals and exit codes included.

The service is this module's own, on a redis-server of its own: `--prune` deletes every experiment
the files do not name, which on the session's shared service would take other tests' experiments.
Most runs go through `main()` in this process (fast); a few run `python -m bandit` for real.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from bandit.cli.commands import main
from bandit.cli.demo import MODELS, SHADOW, demo_experiment
from bandit.cli.local_redis import free_port, start_redis
from bandit.cli.manifest import ManifestError, parse_manifest
from tests.servers import ADMIN_TOKEN, ROOT, ModelServers, ServiceProcess

#: This module's service refuses management bodies past this size (413): a refusal an apply can
#: meet half-way, after the checks of the file passed.
BODY_LIMIT = 8192


@pytest.fixture(scope="module")
def own_service() -> Iterator[ServiceProcess]:
    redis, url = start_redis()
    service = ServiceProcess(url, BANDIT_MAX_API_BODY_BYTES=str(BODY_LIMIT)).start()
    yield service
    service.stop()
    redis.terminate()
    redis.wait(timeout=10)


@pytest.fixture
def api(own_service: ServiceProcess) -> Iterator[httpx.Client]:
    """The service's HTTP API, to check what the CLI did without the CLI."""
    with httpx.Client(
        base_url=own_service.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=10
    ) as client:
        yield client


@dataclass
class Ran:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


def mab(service: ServiceProcess | str, *args: str, token: str | None = ADMIN_TOKEN) -> Ran:
    """`mab ARGS --url ... --token ...` in this process: its exit code, stdout and stderr."""
    url = service if isinstance(service, str) else service.url
    argv = [*args, "--url", url, *(["--token", token] if token is not None else [])]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(argv)
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 2
        else:
            code = 0
    return Ran(code, out.getvalue(), err.getvalue())


def without_kept(out: str) -> str:
    """A plan as printed, less the line of experiments other tests left on this module's service."""
    return "".join(line for line in out.splitlines(keepends=True) if not line.startswith("  not in the files, kept"))


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def ranker_toml(name: str, models: ModelServers, *, weight: float = 1.0, discount: float = 1.0) -> str:
    v1, v2 = models.urls["v1"], models.urls["v2"]
    return f"""
[experiments.{name}]
policy = {{ kind = "thompson", discount = {discount} }}
reward = {{ mode = "explicit", window_s = 3600 }}

[[experiments.{name}.arms]]
name = "v1"
url = "{v1}"

[[experiments.{name}.arms]]
name = "v2"
url = "{v2}"
weight = {weight}
"""


def blue_green_toml(name: str, models: ModelServers) -> str:
    return f"""
[experiments.{name}]
policy = {{ kind = "static" }}
arms = [
  {{ name = "blue", url = "{models.urls["v1"]}", weight = 1 }},
  {{ name = "green", url = "{models.urls["v2"]}", weight = 0 }},
]
"""


def create(api: httpx.Client, name: str, models: ModelServers, **extra: Any) -> dict[str, Any]:
    body = {"name": name, "arms": [{"name": n, "url": u} for n, u in models.urls.items()], **extra}
    answer = api.post("/api/experiments", json=body)
    assert answer.status_code == 201, answer.text
    created: dict[str, Any] = answer.json()
    return created


# -- apply -----------------------------------------------------------------------------------------------
def test_apply_creates_then_the_same_file_again_changes_nothing(
    own_service: ServiceProcess, api: httpx.Client, models: ModelServers, tmp_path: Path
) -> None:
    ranker, blue_green = unique("ranker"), unique("bluegreen")
    path = write(tmp_path / "experiments.toml", ranker_toml(ranker, models) + blue_green_toml(blue_green, models))
    first = mab(own_service, "apply", "-f", path)
    assert (first.code, first.err) == (0, "")
    assert f"+ create {ranker}\n+ create {blue_green}\n" in first.out
    assert f"created {ranker}\ncreated {blue_green}\n" in first.out
    stored = api.get(f"/api/experiments/{ranker}").json()
    assert [arm["url"] for arm in stored["arms"]] == [models.urls["v1"], models.urls["v2"]]
    assert stored["policy"]["kind"] == "thompson" and stored["reward"]["window_s"] == 3600
    assert api.get(f"/api/experiments/{blue_green}").json()["policy"] == {"kind": "static", "weights": None}

    again = mab(own_service, "apply", "-f", path)
    assert again.code == 0
    assert (
        without_kept(again.out)
        == f"= unchanged {ranker}\n= unchanged {blue_green}\nno changes: 2 experiment(s) up to date\n"
    )
    # Not even a PATCH of equal settings: the version and update time stayed.
    after = api.get(f"/api/experiments/{ranker}").json()
    assert (after["version"], after["updated_at"]) == (stored["version"], stored["updated_at"])


def test_dry_run_shows_each_changed_field_old_and_new_and_changes_nothing_then_apply_patches(
    own_service: ServiceProcess, api: httpx.Client, models: ModelServers, tmp_path: Path
) -> None:
    name = unique("ranker")
    path = tmp_path / "experiments.toml"
    assert mab(own_service, "apply", "-f", write(path, ranker_toml(name, models))).code == 0
    before = api.get(f"/api/experiments/{name}").json()

    write(path, ranker_toml(name, models, weight=0.5, discount=0.99))
    dry = mab(own_service, "apply", "-f", str(path), "--dry-run")
    assert dry.code == 0
    assert without_kept(dry.out) == (
        f"~ update {name}\n"
        "    arms[1].weight: 1.0 → 0.5\n"
        "    policy.discount: 1.0 → 0.99\n"
        "0 to create, 1 to update, 0 to delete, 0 unchanged\n"
    )
    assert api.get(f"/api/experiments/{name}").json() == before  # nothing changed on the service

    planned = mab(own_service, "apply", "-f", str(path), "--dry-run", "--json").json()
    assert (planned["dry_run"], planned["made"]) == (True, 0)
    assert planned["actions"] == [
        {
            "action": "update",
            "experiment": name,
            "changes": [
                {"path": "arms[1].weight", "old": 1.0, "new": 0.5},
                {"path": "policy.discount", "old": 1.0, "new": 0.99},
            ],
        }
    ]

    applied = mab(own_service, "apply", "-f", str(path))
    assert (applied.code, applied.out.splitlines()[-1]) == (0, f"updated {name}")
    after = api.get(f"/api/experiments/{name}").json()
    assert after["arms"][1]["weight"] == 0.5 and after["policy"]["discount"] == 0.99
    # A PATCH, not a delete and create: same incarnation (statistics kept), one version on.
    assert (after["incarnation"], after["version"]) == (before["incarnation"], before["version"] + 1)
    assert "no changes: 1 experiment(s) up to date" in mab(own_service, "apply", "-f", str(path)).out


def test_prune_deletes_only_with_the_flag_and_only_what_no_file_names(
    own_service: ServiceProcess, api: httpx.Client, models: ModelServers, tmp_path: Path
) -> None:
    kept, dropped, never_in_a_file = unique("kept"), unique("dropped"), unique("curl-made")
    path = tmp_path / "experiments.toml"
    assert (
        mab(own_service, "apply", "-f", write(path, ranker_toml(kept, models) + ranker_toml(dropped, models))).code == 0
    )
    create(api, never_in_a_file, models)
    write(path, ranker_toml(kept, models))  # `dropped` taken out of the file

    without = mab(own_service, "apply", "-f", str(path))
    assert without.code == 0
    assert "not in the files, kept (--prune deletes them): " in without.out
    assert dropped in without.out and never_in_a_file in without.out
    names = {e["name"] for e in api.get("/api/experiments").json()}
    assert {kept, dropped, never_in_a_file} <= names

    dry = mab(own_service, "apply", "-f", str(path), "--prune", "--dry-run")
    assert f"- delete {dropped}\n" in dry.out and f"- delete {never_in_a_file}\n" in dry.out
    assert f"= unchanged {kept}\n" in dry.out
    assert {e["name"] for e in api.get("/api/experiments").json()} == names

    pruned = mab(own_service, "apply", "-f", str(path), "--prune")
    assert pruned.code == 0
    assert f"deleted {dropped}\n" in pruned.out and f"deleted {never_in_a_file}\n" in pruned.out
    assert [e["name"] for e in api.get("/api/experiments").json()] == [kept]


def test_prune_with_a_file_that_names_nothing_is_refused_and_deletes_nothing(
    own_service: ServiceProcess, api: httpx.Client, models: ModelServers, tmp_path: Path
) -> None:
    name = create(api, unique("ranker"), models)["name"]
    ran = mab(own_service, "apply", "-f", write(tmp_path / "empty.toml", "# nothing yet\n"), "--prune")
    assert ran.code == 2
    assert "mab: --prune with files that name no experiment would delete all" in ran.err
    assert api.get(f"/api/experiments/{name}").status_code == 200


def test_a_bad_file_exits_2_naming_the_field_and_sends_nothing(
    own_service: ServiceProcess, api: httpx.Client, models: ModelServers, tmp_path: Path
) -> None:
    good, bad = unique("good"), unique("bad")
    text = ranker_toml(good, models) + ranker_toml(bad, models).replace(models.urls["v2"], "ftp://x")
    path = write(tmp_path / "experiments.toml", text)
    ran = mab(own_service, "apply", "-f", path)
    assert ran.code == 2 and ran.out == ""
    assert ran.err.startswith(f'mab: {path}: experiment "{bad}": arms[1].url: must be an http:// or https:// URL')
    assert ran.err.rstrip().endswith('; got "ftp://x"')
    # All or nothing: the good experiment of the same file was not created either.
    assert api.get(f"/api/experiments/{good}").status_code == 404


ARM = {"name": "v1", "url": "http://a"}
ARM_TOML = '{ name = "v1", url = "http://a" }'


@pytest.mark.parametrize(
    ("experiment", "toml"),
    [
        ({"arms": [{**ARM, "url": "ftp://x"}]}, 'arms = [{ name = "v1", url = "ftp://x" }]'),
        ({"arms": [{**ARM, "weight": -1}]}, 'arms = [{ name = "v1", url = "http://a", weight = -1 }]'),
        ({"arms": [ARM], "policy": {"kind": "nope"}}, f'arms = [{ARM_TOML}]\npolicy = {{ kind = "nope" }}'),
        ({"arms": [{**ARM, "wieght": 1}]}, 'arms = [{ name = "v1", url = "http://a", wieght = 1 }]'),
        ({"arms": [ARM, {**ARM, "url": "http://b"}]}, f'arms = [{ARM_TOML}, {{ name = "v1", url = "http://b" }}]'),
        ({"arms": [ARM], "reward": {"bounds": [1, 0]}}, f"arms = [{ARM_TOML}]\nreward = {{ bounds = [1, 0] }}"),
        (
            {"arms": [ARM], "policy": {"kind": "ucb1"}, "reward": {"bounds": None}},
            f'arms = [{ARM_TOML}]\npolicy = {{ kind = "ucb1" }}\nreward = {{ bounds = "none" }}',
        ),
    ],
    ids=["url", "weight", "policy-kind", "unknown-field", "duplicate-arms", "bounds", "ucb1-unbounded"],
)
def test_a_file_is_refused_with_the_words_the_api_refuses_its_json_with(
    api: httpx.Client, experiment: dict[str, Any], toml: str
) -> None:
    name = unique("refused")
    answer = api.post("/api/experiments", json={"name": name, **experiment})
    assert answer.status_code == 422
    # The API writes the path in backticks (`arms[0].url`: ...), the file's refusal plainly.
    said = answer.json()["detail"].replace("`arms", "arms").replace("`policy", "policy").replace("`reward", "reward")
    # A rule of the whole experiment is one of the body's to the API; the file names the experiment.
    said = said.replace("`: ", ": ").removeprefix("body: ")
    with pytest.raises(ManifestError) as refused:
        parse_manifest(f"[experiments.{name}]\n{toml}\n", "experiments.toml")
    assert str(refused.value).startswith(f'experiments.toml: experiment "{name}": {said}')


def test_the_demo_experiment_from_its_toml_file_is_one_the_service_creates(
    own_service: ServiceProcess, api: httpx.Client
) -> None:
    body = demo_experiment({name: f"http://127.0.0.1:{9100 + i}" for i, name in enumerate([*MODELS, *SHADOW])})
    body["name"] = unique("demo")
    answer = api.post("/api/experiments", json=body)
    assert answer.status_code == 201, answer.text
    assert [arm["mirror_percent"] for arm in answer.json()["arms"] if arm["shadow"]] == [25.0]


# -- the verbs ---------------------------------------------------------------------------------------------
def test_list_get_and_stats_as_tables_and_as_json(
    own_service: ServiceProcess, api: httpx.Client, models: ModelServers
) -> None:
    name = create(api, unique("ranker"), models, policy={"kind": "thompson"})["name"]
    listed = mab(own_service, "list")
    assert listed.code == 0
    header, *rows = listed.out.splitlines()
    assert header.split() == ["NAME", "STATUS", "POLICY", "ARMS", "VERSION", "UPDATED"]
    (row,) = [row for row in rows if row.startswith(name)]
    assert row.split()[:6] == [name, "running", "thompson", "v1,", "v2,", "v3"]
    assert name in {e["name"] for e in mab(own_service, "list", "--json").json()}

    got = mab(own_service, "get", name)
    assert got.code == 0
    assert got.out.startswith(f"{name}: running, version 1, created ")
    assert "  policy:   kind thompson, discount 1, burn_in 0, min_share 0, model auto\n" in got.out
    assert f"v3    {models.urls['v3']}" in got.out
    assert mab(own_service, "get", name, "--json").json() == api.get(f"/api/experiments/{name}").json()

    stats = mab(own_service, "stats", name)
    assert stats.code == 0
    lines = stats.out.splitlines()
    assert lines[:3] == [
        f"{name}: running, policy thompson, leader -",  # no reward yet
        "  stopping rule (P(best) ≥ 0.95, expected loss ≤ 0.001): not met",
        "  0 decisions, 0 rewards, reward sum 0",
    ]
    assert lines[3].split()[:5] == ["ARM", "HEALTH", "DECISIONS", "SHARE", "REWARDS"]
    assert [line.split()[0] for line in lines[4:]] == ["v1", "v2", "v3"]
    as_json = mab(own_service, "stats", name, "--json").json()
    assert as_json["experiment"] == name and [arm["name"] for arm in as_json["arms"]] == ["v1", "v2", "v3"]


def test_the_lifecycle_verbs_each_change_the_service(
    own_service: ServiceProcess, api: httpx.Client, models: ModelServers
) -> None:
    name = create(api, unique("ranker"), models)["name"]
    incarnation = api.get(f"/api/experiments/{name}").json()["incarnation"]

    def status() -> tuple[str, str | None]:
        experiment = api.get(f"/api/experiments/{name}").json()
        return experiment["status"], experiment["promoted_arm"]

    assert mab(own_service, "pause", name).out == f"paused {name}: paused (v1 takes all traffic), version 2\n"
    assert status() == ("paused", None)
    assert mab(own_service, "resume", name).out == f"resumed {name}: running, version 3\n"
    assert status() == ("running", None)
    promoted = mab(own_service, "promote", name, "v3")
    assert promoted.out == f"promoted {name}: promoted (v3 takes all traffic), version 4\n"
    assert status() == ("promoted", "v3")
    rolled = mab(own_service, "rollback", name, "--json")
    assert rolled.code == 0 and rolled.json()["status"] == "running"
    assert status() == ("running", None)
    assert mab(own_service, "reset", name).out.startswith(
        f"reset {name} (statistics forgotten; feedback for earlier decisions is refused): running, version "
    )
    assert api.get(f"/api/experiments/{name}").json()["incarnation"] != incarnation
    assert mab(own_service, "delete", name).out == f"deleted {name}\n"
    assert api.get(f"/api/experiments/{name}").status_code == 404


def test_promote_without_an_arm_swaps_a_blue_green_split(
    own_service: ServiceProcess, api: httpx.Client, models: ModelServers, tmp_path: Path
) -> None:
    name = unique("bluegreen")
    assert mab(own_service, "apply", "-f", write(tmp_path / "bg.toml", blue_green_toml(name, models))).code == 0
    swapped = mab(own_service, "promote", name)
    assert swapped.out == f"promoted {name}: running (static split: blue 0, green 1), version 2\n"


RESTORES = (
    "    ! traffic split: blue 0%, green 100% → blue 100%, green 0% (the file's split)\n"
    "    ! restores the file's split: the live weights put all traffic on green (a promotion made outside the file?); "
    "to keep that cut-over, write it into the file or apply with --keep-traffic\n"
)


def test_apply_after_a_blue_green_promotion_says_it_restores_the_split_or_keeps_it_with_keep_traffic(
    own_service: ServiceProcess, api: httpx.Client, models: ModelServers, tmp_path: Path
) -> None:
    name = unique("bluegreen")
    path = write(tmp_path / "bg.toml", blue_green_toml(name, models))
    assert mab(own_service, "apply", "-f", path).code == 0
    assert mab(own_service, "promote", name).code == 0

    def policy() -> Any:
        return api.get(f"/api/experiments/{name}").json()["policy"]

    # The job that applies on merge: with --keep-traffic the cut-over stays, and the plan says why.
    for _ in range(2):
        kept = mab(own_service, "apply", "-f", path, "--keep-traffic")
        assert kept.code == 0
        assert (
            f"= unchanged {name}\n    ! traffic split kept as live (--keep-traffic): blue 0%, green 100%; " in kept.out
        )
        assert policy() == {"kind": "static", "weights": [0.0, 1.0]}

    # Without it the file's split comes back: the dry run and the apply say so, plainly.
    dry = mab(own_service, "apply", "-f", path, "--dry-run")
    assert f"~ update {name}\n    policy.weights: [0.0, 1.0] → null\n{RESTORES}" in dry.out
    assert policy() == {"kind": "static", "weights": [0.0, 1.0]}
    applied = mab(own_service, "apply", "-f", path, "--json")
    (action,) = [a for a in applied.json()["actions"] if a["experiment"] == name]
    assert action["notes"][1].startswith("restores the file's split: the live weights put all traffic on green")
    assert policy() == {"kind": "static", "weights": None}  # blue (weight 1) takes the traffic again
    assert "running (static split: blue 1, green 0)" in mab(own_service, "get", name).out


def one_arm_ranker_toml(name: str, models: ModelServers) -> str:
    """`ranker_toml` less its second arm, v2."""
    return ranker_toml(name, models).split("[[experiments." + name + '.arms]]\nname = "v2"')[0]


def v2_shadow_ranker_toml(name: str, models: ModelServers) -> str:
    """`ranker_toml` with its second arm, v2 (the last table), a shadow."""
    return ranker_toml(name, models) + "shadow = true\n"


@pytest.mark.parametrize(
    ("edit", "does", "arms"),
    [
        (one_arm_ranker_toml, "removes", [("v1", False)]),
        (v2_shadow_ranker_toml, "makes a shadow", [("v1", False), ("v2", True)]),
    ],
)
def test_a_file_that_removes_the_promoted_arm_or_makes_it_a_shadow_says_the_update_ends_the_promotion_which_it_does(
    own_service: ServiceProcess,
    api: httpx.Client,
    models: ModelServers,
    tmp_path: Path,
    edit: Callable[[str, ModelServers], str],
    does: str,
    arms: list[tuple[str, bool]],
) -> None:
    name = unique("ranker")
    path = tmp_path / "experiments.toml"
    assert mab(own_service, "apply", "-f", write(path, ranker_toml(name, models))).code == 0
    assert mab(own_service, "promote", name, "v2").code == 0
    write(path, edit(name, models))

    def stored() -> tuple[str, str | None, list[tuple[str, bool]]]:
        experiment = api.get(f"/api/experiments/{name}").json()
        return experiment["status"], experiment["promoted_arm"], [(a["name"], a["shadow"]) for a in experiment["arms"]]

    header = f"~ update {name} (ends the promotion of v2, which the file {does}: the policy routes again)\n"
    assert header in mab(own_service, "apply", "-f", str(path), "--dry-run").out
    refused = mab(own_service, "apply", "-f", str(path), "--keep-traffic")
    assert (refused.code, refused.out) == (2, "")
    assert refused.err.startswith(f'mab: experiment "{name}": the update would move its live traffic (ends the ')
    assert stored() == ("promoted", "v2", [("v1", False), ("v2", False)])

    applied = mab(own_service, "apply", "-f", str(path))
    assert applied.code == 0 and header in applied.out
    assert stored() == ("running", None, arms)


def test_a_file_that_makes_a_cut_over_split_learn_says_it_ends_the_cut_over_and_keep_traffic_refuses_it(
    own_service: ServiceProcess, api: httpx.Client, models: ModelServers, tmp_path: Path
) -> None:
    name = unique("bluegreen")
    path = tmp_path / "bg.toml"
    assert mab(own_service, "apply", "-f", write(path, blue_green_toml(name, models))).code == 0
    assert mab(own_service, "promote", name).code == 0
    write(path, blue_green_toml(name, models).replace('kind = "static"', 'kind = "thompson"'))

    def policy() -> Any:
        return api.get(f"/api/experiments/{name}").json()["policy"]

    refused = mab(own_service, "apply", "-f", str(path), "--keep-traffic")
    assert (refused.code, refused.out) == (2, "")
    assert refused.err.startswith(
        f'mab: experiment "{name}": the update would move its live traffic (its policy changes from static to '
        "thompson: the live split blue 0%, green 100% gives way to the policy's own routing)"
    )
    assert policy() == {"kind": "static", "weights": [0.0, 1.0]}

    note = "    ! ends the cut-over to green: the policy routes again (thompson, over blue, green); "
    assert note in mab(own_service, "apply", "-f", str(path), "--dry-run").out
    applied = mab(own_service, "apply", "-f", str(path))
    assert applied.code == 0 and note in applied.out
    assert policy()["kind"] == "thompson"


# -- refusals and exit codes ------------------------------------------------------------------------------
def test_refusals_exit_1_with_the_status_and_the_services_words(
    own_service: ServiceProcess, api: httpx.Client, models: ModelServers, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = create(api, unique("ranker"), models)["name"]
    missing = unique("missing")
    cases = [
        (["list"], "wrong-token", "refused by the service (403): the bearer token is not the admin token"),
        (["get", missing], ADMIN_TOKEN, f"refused by the service (404): experiment '{missing}' does not exist"),
        (["stats", missing], ADMIN_TOKEN, "(404)"),
        (["delete", missing], ADMIN_TOKEN, "(404)"),
        (
            ["rollback", name],
            ADMIN_TOKEN,
            f"refused by the service (409): experiment '{name}' has no earlier settings to roll back to",
        ),
        (
            ["promote", name],
            ADMIN_TOKEN,
            "refused by the service (422): `arm` is required, except to swap a two-arm blue/green (100/0) split",
        ),
        (["promote", name, "v9"], ADMIN_TOKEN, f"(404): experiment '{name}' has no serving arm 'v9'"),
        (["pause", "not a name"], ADMIN_TOKEN, "refused by the service (422)"),
    ]
    for args, token, message in cases:
        ran = mab(own_service, *args, token=token)
        assert (ran.code, ran.out) == (1, ""), args
        assert ran.err.startswith("mab: ") and message in ran.err, (args, ran.err)

    monkeypatch.delenv("BANDIT_ADMIN_TOKEN", raising=False)
    anonymous = mab(own_service, "list", token=None)
    assert anonymous.code == 1
    assert anonymous.err == (
        "mab: refused by the service (401): management requires 'Authorization: Bearer <BANDIT_ADMIN_TOKEN>' "
        "(no admin token given: --token or BANDIT_ADMIN_TOKEN)\n"
    )


def test_an_apply_the_service_refuses_exits_1(
    own_service: ServiceProcess, models: ModelServers, tmp_path: Path
) -> None:
    path = write(tmp_path / "experiments.toml", ranker_toml(unique("ranker"), models))
    ran = mab(own_service, "apply", "-f", path, token="wrong-token")
    assert ran.code == 1
    assert ran.err == "mab: refused by the service (403): the bearer token is not the admin token\n"


def test_an_apply_refused_half_way_says_how_far_it_got_and_exits_1(
    own_service: ServiceProcess, api: httpx.Client, models: ModelServers, tmp_path: Path
) -> None:
    small, large = unique("small"), unique("large")
    many_arms = "".join(
        f'[[experiments.{large}.arms]]\nname = "arm-{i}"\nurl = "http://10.0.0.{i}:9000/{"p" * 200}"\n'
        for i in range(40)
    )
    path = write(tmp_path / "experiments.toml", ranker_toml(small, models) + f"[experiments.{large}]\n" + many_arms)
    ran = mab(own_service, "apply", "-f", path, "--json")
    assert ran.code == 1
    assert ran.err == (
        f"mab: create {large}: refused by the service (413): request body exceeds the limit of {BODY_LIMIT} bytes "
        "for /api/experiments\n"
        "mab: 1 of 2 changes made before it; apply again once it is fixed\n"
    )
    assert (ran.json()["dry_run"], ran.json()["made"]) == (False, 1)
    assert api.get(f"/api/experiments/{small}").status_code == 200
    assert api.get(f"/api/experiments/{large}").status_code == 404


class CutAt:
    """A TCP relay in front of the service that drops a connection, unanswered, at the first request
    that starts with `request` (as a crash or a network cut half-way through an apply would)."""

    def __init__(self, service: ServiceProcess, request: bytes) -> None:
        self.target = ("127.0.0.1", service.port)
        self.request = request
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:  # closed: the test is over
                return
            upstream = socket.create_connection(self.target)
            threading.Thread(target=self._pump, args=(client, upstream, self.request), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, None), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket, cut_at: bytes | None) -> None:
        seen = b""
        try:
            while data := source.recv(65536):
                seen = seen[-len(cut_at or b"") :] + data
                if cut_at is not None and cut_at in seen:
                    break
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)
                end.close()

    def close(self) -> None:
        self.listener.close()


def test_an_apply_cut_off_half_way_says_how_far_it_got_and_exits_3(
    own_service: ServiceProcess, api: httpx.Client, models: ModelServers, tmp_path: Path
) -> None:
    new, changed = unique("new"), unique("changed")
    create(api, changed, models)
    text = ranker_toml(new, models) + ranker_toml(changed, models).replace(models.urls["v2"], models.urls["v3"])
    path = write(tmp_path / "experiments.toml", text)
    relay = CutAt(own_service, f"PATCH /api/experiments/{changed} ".encode())
    try:
        ran = mab(relay.url, "apply", "-f", path)
        assert ran.code == 3
        assert f"created {new}\n" in ran.out and "updated" not in ran.out
        first, second = ran.err.splitlines()
        assert first.startswith(
            f"mab: update {changed}: could not reach the service at {relay.url} (PATCH /api/experiments/{changed}): "
        )
        assert second == (
            "mab: 1 of 2 changes made before it, and this one perhaps (no answer came); apply again once the "
            "service is reachable: the plan then shows what is left"
        )
        as_json = mab(relay.url, "apply", "-f", path, "--json")
        assert as_json.code == 3 and "mab: 0 of 1 changes made before it, and this one perhaps" in as_json.err
        answer = as_json.json()
        assert (answer["made"], answer["failed"]) == (0, {"action": "update", "experiment": changed})
    finally:
        relay.close()
    # What is left is what the next plan shows: the update, not the creation made before the cut.
    again = mab(own_service, "apply", "-f", path)
    assert again.code == 0 and f"= unchanged {new}\n~ update {changed}\n" in again.out


def test_a_rename_under_prune_at_the_experiment_limit_says_the_deletion_is_pending_and_how_to_go_on(
    own_service: ServiceProcess, models: ModelServers, tmp_path: Path
) -> None:
    # A service of its own (another database of this module's Redis) that holds one experiment at most.
    limited = ServiceProcess(own_service.redis_url.rsplit("/", 1)[0] + "/1", BANDIT_MAX_EXPERIMENTS="1").start()
    try:
        old, new = unique("old"), unique("new")
        path = tmp_path / "experiments.toml"
        assert mab(limited, "apply", "-f", write(path, ranker_toml(old, models))).code == 0
        write(path, ranker_toml(new, models))  # renamed
        limit = (
            f"mab: create {new}: refused by the service (409): the limit of 1 experiments (BANDIT_MAX_EXPERIMENTS) "
            "is reached: delete one or raise the limit\n"
        )
        ran = mab(limited, "apply", "-f", str(path), "--prune")
        assert ran.code == 1
        assert ran.err == (
            limit + f"mab: 1 deletion is pending ({old}): apply runs them after the creations, so that a refused "
            f"creation never leaves fewer experiments than before; apply them first with `mab delete {old}` and "
            "apply again, or raise BANDIT_MAX_EXPERIMENTS\n"
            "mab: 0 of 2 changes made before it; apply again once it is fixed\n"
        )
        assert [e["name"] for e in mab(limited, "list", "--json").json()] == [old]  # nothing lost
        # No deletion pending, no such advice: the limit's own words.
        assert (
            mab(limited, "apply", "-f", str(path)).err
            == limit + "mab: 0 of 1 changes made before it; apply again once it is fixed\n"
        )

        assert mab(limited, "delete", old).code == 0
        assert mab(limited, "apply", "-f", str(path), "--prune").code == 0
        assert [e["name"] for e in mab(limited, "list", "--json").json()] == [new]
    finally:
        limited.stop()


def test_a_service_that_does_not_listen_exits_3() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    for args in (["list"], ["get", "x"], ["pause", "x"]):
        ran = mab(url, *args)
        assert ran.code == 3, args
        assert ran.err.startswith(f"mab: could not reach the service at {url} ("), ran.err


def test_a_bad_command_line_exits_2() -> None:
    ran = mab("http://127.0.0.1:1", "promote")  # no name
    assert ran.code == 2 and "the following arguments are required: name" in ran.err
    assert mab("http://127.0.0.1:1", "apply").code == 2  # no -f


# -- for real: `python -m bandit` in a subprocess, configured by the environment ---------------------------
def run_mab(*args: str, **environ: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("BANDIT_")} | environ
    return subprocess.run(
        [sys.executable, "-m", "bandit", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=30
    )


def test_the_installed_command_reads_url_and_token_from_the_environment_and_exits_with_its_codes(
    own_service: ServiceProcess, api: httpx.Client, models: ModelServers, tmp_path: Path
) -> None:
    env = {"BANDIT_URL": own_service.url, "BANDIT_ADMIN_TOKEN": ADMIN_TOKEN}
    name = unique("ranker")
    path = write(tmp_path / "experiments.toml", ranker_toml(name, models))
    applied = run_mab("apply", "-f", path, **env)
    assert (applied.returncode, applied.stderr) == (0, "")
    assert applied.stdout.endswith(f"created {name}\n")

    missing = run_mab("get", "nowhere-to-be-found", **env)
    assert missing.returncode == 1 and missing.stdout == ""
    assert missing.stderr == "mab: refused by the service (404): experiment 'nowhere-to-be-found' does not exist\n"

    bad_toml = "[experiments.x]\narms = [\n  { name = 'v1' url = 'http://a' },\n]\n"
    bad = run_mab("apply", "-f", write(tmp_path / "bad.toml", bad_toml), **env)
    assert bad.returncode == 2
    assert bad.stderr.startswith(f"mab: {tmp_path / 'bad.toml'}: not a valid TOML file: ")
    assert bad.stderr.endswith("Unclosed inline table (at line 3, column 17)\n")

    away = run_mab("list", BANDIT_URL=f"http://127.0.0.1:{free_port()}", BANDIT_ADMIN_TOKEN=ADMIN_TOKEN)
    assert away.returncode == 3 and away.stderr.startswith("mab: could not reach the service at http://127.0.0.1:")
    assert "Traceback" not in bad.stderr + away.stderr + missing.stderr
