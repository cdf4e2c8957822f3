"""Experiments files: read into the API's own models, refused with the file, experiment and field
named; and the plan that compares them with what a service holds (no service needed here)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest

from bandit.cli.demo import EXPERIMENT, MODELS, SHADOW, demo_experiment
from bandit.cli.manifest import POLICY_KINDS, ManifestError, load_manifest, load_manifests, parse_manifest
from bandit.cli.plan import ABSENT, PATCHABLE_FIELDS, SPEC_FIELDS, FieldChange, PlanError, make_plan, patch_body
from bandit.core.models import (
    CanarySettings,
    Experiment,
    ExperimentSpec,
    RewardSpec,
    StaticSettings,
    ThompsonSettings,
    UCB1Settings,
)
from tests.servers import ROOT

EXAMPLE = ROOT / "docs" / "experiments.example.toml"

TWO_ARMS = """
[[experiments.checkout-ranker.arms]]
name = "v1"
url = "http://10.0.0.5:9000"

[[experiments.checkout-ranker.arms]]
name = "v2"
url = "http://10.0.0.6:9000"
"""


def manifest(text: str) -> dict[str, ExperimentSpec]:
    return parse_manifest(text, "experiments.toml").experiments


def refusal(text: str | bytes) -> str:
    with pytest.raises(ManifestError) as refused:
        parse_manifest(text, "experiments.toml")
    return str(refused.value)


# -- what a file becomes -----------------------------------------------------------------------------
def test_an_experiment_is_the_api_body_under_its_name_with_the_apis_defaults() -> None:
    specs = manifest('[experiments.checkout-ranker]\npolicy = { kind = "ucb1", c = 1 }\n' + TWO_ARMS)
    assert list(specs) == ["checkout-ranker"]
    # The same spec the API builds from the equivalent JSON body.
    api = msgspec.json.decode(
        b'{"name": "checkout-ranker", "policy": {"kind": "ucb1", "c": 1},'
        b' "arms": [{"name": "v1", "url": "http://10.0.0.5:9000"}, {"name": "v2", "url": "http://10.0.0.6:9000"}]}',
        type=ExperimentSpec,
    )
    assert specs["checkout-ranker"] == api
    assert specs["checkout-ranker"].reward == RewardSpec()  # omitted: the API's default


def test_bounds_none_is_the_null_toml_cannot_write() -> None:
    specs = manifest('[experiments.checkout-ranker]\nreward = { bounds = "none" }\n' + TWO_ARMS)
    assert specs["checkout-ranker"].reward.bounds is None


def test_the_example_file_in_docs_is_valid_and_shows_each_style() -> None:
    specs = load_manifest(EXAMPLE).experiments
    assert list(specs) == ["checkout-ranker", "search-blue-green", "pricing-model", "ranker-canary"]
    assert [arm.shadow for arm in specs["checkout-ranker"].arms] == [False, False, False, True]
    assert isinstance(specs["search-blue-green"].policy, StaticSettings)
    assert specs["search-blue-green"].static_weights() == [1.0, 0.0]
    assert specs["pricing-model"].reward.bounds is None
    canary = specs["ranker-canary"]
    assert isinstance(canary.policy, CanarySettings) and canary.policy.steps == [1, 5, 25, 50, 100]
    assert canary.guardrails is not None and canary.guardrails.max_p99_ms == 250


def test_the_demo_builds_its_experiment_from_its_toml_file() -> None:
    urls = {name: f"http://127.0.0.1:{9100 + i}" for i, name in enumerate([*MODELS, *SHADOW])}
    body = demo_experiment(urls)
    assert body["name"] == EXPERIMENT
    assert {arm["name"]: arm["url"] for arm in body["arms"]} == urls
    assert [arm["name"] for arm in body["arms"] if arm["shadow"]] == list(SHADOW)
    msgspec.convert(body, ExperimentSpec)  # what POST takes


# -- refusals: the file, the experiment and the field path ------------------------------------------
def arms(*rows: str) -> str:
    return "arms = [\n" + "".join(f"  {{ {row} }},\n" for row in rows) + "]\n"


V1 = 'name = "v1", url = "http://10.0.0.5:9000"'
V2 = 'name = "v2", url = "http://10.0.0.6:9000"'
URL_RULE = "must be an http:// or https:// URL with a host"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "[experiments.x]\narms = [\n  { name = 'v1' url = 'http://a' },\n]\n",
            "experiments.toml: not a valid TOML file: Unclosed inline table (at line 3, column 17)",
            id="toml-syntax",
        ),
        pytest.param(
            "[experiments.x]\n" + arms(V1) + "\n[experiments.y]\n" + arms(V1) + "\n[experiments.x]\n" + arms(V2),
            "experiments.toml: not a valid TOML file: Cannot declare ('experiments', 'x') twice "
            "(at line 11, column 15)",
            id="duplicate-experiment-names",
        ),
        pytest.param(
            '[experiments."checkout ranker"]\n' + arms(V1),
            'experiments.toml: experiment "checkout ranker": name: must be 1-64 ASCII letters, digits, '
            "'-' or '_', starting with a letter or digit; got \"checkout ranker\"",
            id="name-the-api-refuses",
        ),
        pytest.param(
            '[experiments.x]\nname = "y"\n' + arms(V1),
            'experiments.toml: experiment "x": name: the table\'s key names the experiment ([experiments.x]); '
            "remove this field",
            id="name-field-beside-the-key",
        ),
        pytest.param(
            "[experiments.checkout-ranker]\n" + arms(V1, 'name = "v2", url = "ftp://x"'),
            f'experiments.toml: experiment "checkout-ranker": arms[1].url: {URL_RULE}',
            id="bad-url",
        ),
        pytest.param(
            "[experiments.x]\n" + arms(V1 + ", weight = -1"),
            'experiments.toml: experiment "x": arms[0].weight: Expected `float` >= 0.0; got -1',
            id="negative-weight",
        ),
        pytest.param(
            "[experiments.x]\n" + arms(V1 + ", weight = nan"),
            'experiments.toml: experiment "x": arms[0].weight: Expected `float` >= 0.0; got NaN',
            id="nan-weight",
        ),
        pytest.param(
            '[experiments.x]\npolicy = { kind = "thompsen" }\n' + arms(V1),
            f"experiments.toml: experiment \"x\": policy.kind: Invalid value 'thompsen': the kinds are "
            f"{', '.join(POLICY_KINDS)}",
            id="unknown-policy-kind",
        ),
        pytest.param(
            "[experiments.x]\n" + arms(V1 + ", wieght = 2"),
            'experiments.toml: experiment "x": arms[0]: Object contains unknown field `wieght`',
            id="unknown-arm-field",
        ),
        pytest.param(
            '[experiments.x]\npolicy = { kind = "thompson", discount = 0.9, epsilon = 0.1 }\n' + arms(V1),
            'experiments.toml: experiment "x": policy: Object contains unknown field `epsilon`',
            id="field-of-another-policy",
        ),
        pytest.param(
            "[experiments.x]\nowner = 'search-team'\n" + arms(V1),
            'experiments.toml: experiment "x": Object contains unknown field `owner`',
            id="unknown-experiment-field",
        ),
        pytest.param(
            "[experiments.x]\n" + arms(V1, 'name = "v1", url = "http://10.0.0.7:9000"'),
            "experiments.toml: experiment \"x\": arm names must be unique, repeated: ['v1']",
            id="duplicate-arm-names",
        ),
        pytest.param(
            "[experiments.x]\n" + arms(V1 + ", shadow = true"),
            'experiments.toml: experiment "x": at least one arm must serve traffic (shadow: false)',
            id="only-shadow-arms",
        ),
        pytest.param(
            "[experiments.x]\n",
            'experiments.toml: experiment "x": Object missing required field `arms`',
            id="no-arms",
        ),
        pytest.param(
            "[experiments.x]\narms = []\n",
            'experiments.toml: experiment "x": arms: Expected `array` of length >= 1',
            id="empty-arms",
        ),
        pytest.param(
            "[experiments.x]\nreward = { window_s = '1d' }\n" + arms(V1),
            'experiments.toml: experiment "x": reward.window_s: Expected `int`, got `str` ("1d")',
            id="wrong-type",
        ),
        pytest.param(
            "[experiments.x]\nreward = { bounds = [1, 0] }\n" + arms(V1),
            'experiments.toml: experiment "x": reward: reward.bounds must be [lower, upper] with lower < upper',
            id="bounds-reversed",
        ),
        pytest.param(
            "[experiments.x]\nreward = { bounds = 'null' }\n" + arms(V1),
            'experiments.toml: experiment "x": reward.bounds: Expected `array | null`, got `str` ("null"): write '
            'bounds = "none" for unbounded rewards (TOML has no null)',
            id="null-spelt-wrong",
        ),
        pytest.param(
            '[experiments.x]\npolicy = { kind = "ucb1" }\nreward = { bounds = "none" }\n' + arms(V1),
            'experiments.toml: experiment "x": policy kind ucb1 needs rewards in known bounds',
            id="ucb1-unbounded",
        ),
        pytest.param(
            '[experiments.x]\npolicy = { kind = "static", weights = [1] }\n' + arms(V1, V2),
            'experiments.toml: experiment "x": policy.weights has 1 entries for 2 arms',
            id="static-weights-count",
        ),
        pytest.param(
            '[experiments.x]\npolicy = { kind = "epsilon_greedy", min_share = 0.6 }\n' + arms(V1, V2),
            'experiments.toml: experiment "x": policy.min_share 0.6 for 2 serving arms exceeds all traffic',
            id="min-share-too-high",
        ),
        pytest.param(
            "[experiments.x]\n" + arms(V1 + ', health_path = "health"'),
            "experiments.toml: experiment \"x\": arms[0].health_path: must be a path starting with '/'",
            id="health-path",
        ),
        pytest.param(
            "[experiment.x]\n" + arms(V1),
            'experiments.toml: unknown top-level key "experiment": a manifest holds only [experiments.NAME] tables',
            id="top-level-typo",
        ),
        pytest.param(
            "experiments = 3\n",
            "experiments.toml: `experiments` must be a table of [experiments.NAME] tables, got a value of type int",
            id="experiments-not-a-table",
        ),
        pytest.param(
            "[experiments]\nx = 'thompson'\n",
            'experiments.toml: experiment "x": must be a table ([experiments.x]), got a string',
            id="experiment-not-a-table",
        ),
        pytest.param(
            b"[experiments.x]\n# caf\xe9\n",
            "experiments.toml: not a valid TOML file: 'utf-8' codec can't decode byte 0xe9",
            id="not-utf-8",
        ),
    ],
)
def test_a_bad_file_is_refused_naming_file_experiment_and_field(text: str | bytes, expected: str) -> None:
    assert refusal(text).startswith(expected)


def test_every_bad_experiment_of_a_file_is_named_at_once() -> None:
    text = "[experiments.a]\n" + arms(V1 + ", weight = -1") + "[experiments.b]\n" + arms(V1) + "[experiments.c]\n"
    assert refusal(text).splitlines() == [
        'experiments.toml: experiment "a": arms[0].weight: Expected `float` >= 0.0; got -1',
        'experiments.toml: experiment "c": Object missing required field `arms`',
    ]


def test_an_experiment_named_by_two_files_names_both(tmp_path: Path) -> None:
    first, second = tmp_path / "team-a.toml", tmp_path / "team-b.toml"
    first.write_text("[experiments.shared]\n" + arms(V1))
    second.write_text("[experiments.shared]\n" + arms(V2) + "[experiments.own]\n" + arms(V2))
    with pytest.raises(ManifestError, match=rf'^{second}: experiment "shared": already named in {first}$'):
        load_manifests([first, second])
    assert list(load_manifests([first]).experiments) == ["shared"]


def test_a_missing_file_is_named() -> None:
    with pytest.raises(ManifestError, match=r"^nowhere\.toml: cannot read the file: No such file or directory$"):
        load_manifest("nowhere.toml")


# -- the plan ------------------------------------------------------------------------------------------
def live(spec: ExperimentSpec, **state: Any) -> dict[str, Any]:
    """What GET /api/experiments/{name} answers for `spec`: the stored Experiment, as JSON."""
    stored = Experiment(**{f: getattr(spec, f) for f in SPEC_FIELDS}, version=3, created_at=1.0, **state)
    answer: dict[str, Any] = msgspec.json.decode(msgspec.json.encode(stored))
    return answer


BASE = manifest("[experiments.checkout-ranker]\n" + TWO_ARMS)["checkout-ranker"]


def test_a_file_equal_to_the_service_plans_nothing_even_where_it_omits_defaults_or_writes_ints() -> None:
    written = manifest("[experiments.checkout-ranker]\nreward = { bounds = [0, 1], window_s = 86400 }\n" + TWO_ARMS)
    plan = make_plan(list(written.values()), [live(BASE)], prune=False)
    assert [(a.verb, a.name) for a in plan.actions] == [("unchanged", "checkout-ranker")]
    assert plan.pending == []
    assert plan.describe().endswith("no changes: 1 experiment(s) up to date")


def test_an_edit_is_an_update_naming_each_field_old_and_new_and_patching_only_those() -> None:
    edited = manifest(
        '[experiments.checkout-ranker]\npolicy = { kind = "thompson", discount = 0.99 }\n'
        + TWO_ARMS.replace('url = "http://10.0.0.6:9000"', 'url = "http://10.0.0.6:9000"\nweight = 0.5')
    )["checkout-ranker"]
    (action,) = make_plan([edited], [live(BASE)], prune=False).actions
    assert action.verb == "update"
    assert action.changes == (FieldChange("arms[1].weight", 1.0, 0.5), FieldChange("policy.discount", 1.0, 0.99))
    assert set(action.body or {}) == {"arms", "policy"}  # each changed field whole; reward, stopping untouched
    assert msgspec.convert(action.body, type=dict[str, Any])["policy"]["discount"] == 0.99
    assert "    arms[1].weight: 1.0 → 0.5" in make_plan([edited], [live(BASE)], prune=False).describe()


def test_another_policy_kind_is_one_change_and_an_added_arm_shows_whole() -> None:
    changed = msgspec.structs.replace(
        BASE,
        policy=StaticSettings(),
        arms=[*BASE.arms, msgspec.structs.replace(BASE.arms[0], name="v3", url="http://10.0.0.7:9000")],
    )
    (action,) = make_plan([changed], [live(BASE)], prune=False).actions
    paths = [change.path for change in action.changes]
    assert paths == ["arms[2]", "policy"]
    assert action.changes[0].old is ABSENT
    assert str(action.changes[0]).startswith('arms[2]: (none) → {"name": "v3", "url": "http://10.0.0.7:9000"')
    assert action.changes[1].new == {"kind": "static", "weights": None}


def test_creations_and_kept_experiments_without_prune_and_deletions_only_with_it() -> None:
    other = msgspec.structs.replace(BASE, name="old-ranker")
    new = msgspec.structs.replace(BASE, name="new-ranker")
    kept = make_plan([BASE, new], [live(BASE), live(other)], prune=False)
    assert [(a.verb, a.name) for a in kept.actions] == [("unchanged", "checkout-ranker"), ("create", "new-ranker")]
    assert kept.kept == ("old-ranker",)
    assert "not in the files, kept (--prune deletes them): old-ranker" in kept.describe()
    pruned = make_plan([BASE, new], [live(BASE), live(other)], prune=True)
    assert [(a.verb, a.name) for a in pruned.pending] == [("create", "new-ranker"), ("delete", "old-ranker")]
    assert pruned.kept == ()


def test_prune_with_files_that_name_nothing_is_refused() -> None:
    with pytest.raises(PlanError, match="would delete all 1 experiments of the service; refused"):
        make_plan([], [live(BASE)], prune=True)
    assert make_plan([], [], prune=True).pending == []


def test_a_paused_or_promoted_experiment_is_said_to_stay_so() -> None:
    edited = msgspec.structs.replace(BASE, policy=ThompsonSettings(discount=0.9))
    plan = make_plan([edited], [live(BASE, status="promoted", promoted_arm="v2")], prune=False)
    assert "~ update checkout-ranker (stays promoted to v2: apply changes no lifecycle)" in plan.describe()
    paused = make_plan([edited], [live(BASE, status="paused")], prune=False, keep_traffic=True)
    assert "~ update checkout-ranker (stays paused: apply changes no lifecycle)" in paused.describe()


def test_an_update_that_moves_a_paused_or_promoted_experiments_traffic_says_so_and_keep_traffic_refuses_it() -> None:
    # The service ends a promotion whose arm a PATCH removes (bandit/api/experiments.py, `update`).
    only_v1 = msgspec.structs.replace(BASE, arms=BASE.arms[:1])
    promoted = [live(BASE, status="promoted", promoted_arm="v2")]
    (action,) = make_plan([only_v1], promoted, prune=False).actions
    assert action.lifecycle == "ends the promotion of v2, which the file removes: the policy routes again"
    assert f"~ update checkout-ranker ({action.lifecycle})\n" in make_plan([only_v1], promoted, prune=False).describe()
    assert action.to_json()["lifecycle"] == action.lifecycle
    # Paused sends everything to the first serving arm: a file that reorders the arms moves it.
    reordered = msgspec.structs.replace(BASE, arms=BASE.arms[::-1])
    (paused,) = make_plan([reordered], [live(BASE, status="paused")], prune=False).actions
    assert paused.lifecycle == "stays paused, but all its traffic moves from v1 to v2, the new first serving arm"
    for spec, state in [(only_v1, promoted[0]), (reordered, live(BASE, status="paused"))]:
        with pytest.raises(PlanError, match=r'^experiment "checkout-ranker": the update would move its live traffic'):
            make_plan([spec], [state], prune=False, keep_traffic=True)


def test_a_file_that_makes_the_promoted_arm_a_shadow_ends_the_promotion_and_keep_traffic_refuses_it() -> None:
    # The service ends a promotion whose arm a PATCH makes a shadow, too: a shadow serves nothing.
    v2_shadow = msgspec.structs.replace(BASE, arms=[BASE.arms[0], msgspec.structs.replace(BASE.arms[1], shadow=True)])
    promoted = [live(BASE, status="promoted", promoted_arm="v2")]
    (action,) = make_plan([v2_shadow], promoted, prune=False).actions
    assert action.lifecycle == "ends the promotion of v2, which the file makes a shadow: the policy routes again"
    with pytest.raises(
        PlanError, match=r'^experiment "checkout-ranker": the update would move its live traffic \(ends the promotion'
    ):
        make_plan([v2_shadow], promoted, prune=False, keep_traffic=True)
    # Another arm's shadow leaves the promotion as it is.
    (kept,) = make_plan([v2_shadow], [live(BASE, status="promoted", promoted_arm="v1")], prune=False).actions
    assert kept.lifecycle == "stays promoted to v1: apply changes no lifecycle"


BLUE_GREEN = manifest(
    '[experiments.bg]\npolicy = { kind = "static" }\narms = [\n'
    '  { name = "blue", url = "http://10.0.1.5:8080", weight = 1 },\n'
    '  { name = "green", url = "http://10.0.1.6:8080", weight = 0 },\n]\n'
)["bg"]
#: What `mab promote bg` leaves on the service: all weight on green, in policy.weights.
CUT_OVER = live(msgspec.structs.replace(BLUE_GREEN, policy=StaticSettings(weights=[0.0, 1.0])))


def test_applying_a_static_split_over_a_promotion_restores_the_files_split_and_says_so() -> None:
    plan = make_plan([BLUE_GREEN], [CUT_OVER], prune=False)
    (action,) = plan.actions
    assert action.body == {"policy": {"kind": "static", "weights": None}}
    assert plan.describe().splitlines()[:4] == [
        "~ update bg",
        "    policy.weights: [0.0, 1.0] → null",
        "    ! traffic split: blue 0%, green 100% → blue 100%, green 0% (the file's split)",
        "    ! restores the file's split: the live weights put all traffic on green (a promotion made outside the "
        "file?); to keep that cut-over, write it into the file or apply with --keep-traffic",
    ]
    assert action.to_json()["notes"] == list(action.notes)
    # A split the file itself changes, with no arm holding all traffic live: the shares, no guess.
    canary = msgspec.structs.replace(BLUE_GREEN, policy=StaticSettings(weights=[0.8, 0.2]))
    (moved,) = make_plan(
        [canary], [live(msgspec.structs.replace(canary, policy=StaticSettings(weights=[0.9, 0.1])))], prune=False
    ).actions
    assert moved.notes == ("traffic split: blue 90%, green 10% → blue 80%, green 20% (the file's split)",)
    # A learning policy has no split to show.
    assert (
        make_plan([BASE], [live(msgspec.structs.replace(BASE, policy=ThompsonSettings(discount=0.9)))], prune=False)
        .actions[0]
        .notes
        == ()
    )


def test_keep_traffic_keeps_a_live_split_and_applies_the_rest_of_the_file() -> None:
    (same,) = make_plan([BLUE_GREEN], [CUT_OVER], prune=False, keep_traffic=True).actions
    assert (same.verb, same.body) == ("unchanged", None)
    assert same.notes == (
        "traffic split kept as live (--keep-traffic): blue 0%, green 100%; the file's is blue 100%, green 0%",
    )
    # Another change of the file goes; the split (policy.weights and each arm's weight) stays as live.
    moved_blue = msgspec.structs.replace(
        BLUE_GREEN, arms=[msgspec.structs.replace(BLUE_GREEN.arms[0], url="http://10.0.1.7:8080"), BLUE_GREEN.arms[1]]
    )
    (update,) = make_plan([moved_blue], [CUT_OVER], prune=False, keep_traffic=True).actions
    assert [str(change) for change in update.changes] == [
        'arms[0].url: "http://10.0.1.5:8080" → "http://10.0.1.7:8080"'
    ]
    assert set(update.body or {}) == {"arms"}
    assert [arm["weight"] for arm in (update.body or {})["arms"]] == [1.0, 0.0]  # the live arms' own, as before
    # Over other arms the live split cannot be kept: refused, not guessed.
    red = msgspec.structs.replace(BLUE_GREEN.arms[1], name="red", url="http://10.0.1.8:8080")
    three = msgspec.structs.replace(BLUE_GREEN, arms=[*BLUE_GREEN.arms, red])
    with pytest.raises(PlanError, match=r'^experiment "bg": --keep-traffic cannot keep the live split \(blue 0%, '):
        make_plan([three], [CUT_OVER], prune=False, keep_traffic=True)


LEARNING_BLUE_GREEN = msgspec.structs.replace(BLUE_GREEN, policy=ThompsonSettings())


def test_a_learning_policy_over_a_cut_over_split_says_it_ends_the_cut_over() -> None:
    (ended,) = make_plan([LEARNING_BLUE_GREEN], [CUT_OVER], prune=False).actions
    assert ended.notes == (
        "ends the cut-over to green: the policy routes again (thompson, over blue, green); to keep the cut-over, "
        "keep the file's policy static with all weight on green",
    )
    assert [change.path for change in ended.changes] == ["policy"]
    # A split with no arm holding all traffic is no cut-over, and a paused experiment's traffic stays
    # on its control whatever the policy: neither gets the note.
    canary = live(msgspec.structs.replace(BLUE_GREEN, policy=StaticSettings(weights=[0.9, 0.1])))
    assert make_plan([LEARNING_BLUE_GREEN], [canary], prune=False).actions[0].notes == ()
    paused = {**CUT_OVER, "status": "paused"}
    (still,) = make_plan([LEARNING_BLUE_GREEN], [paused], prune=False).actions
    assert (still.notes, still.lifecycle) == ((), "stays paused: apply changes no lifecycle")


def test_keep_traffic_refuses_a_policy_change_from_or_to_static_of_an_experiment_the_policy_routes() -> None:
    from_static = (
        r'^experiment "bg": the update would move its live traffic \(its policy changes from static to thompson: '
        r"the live split blue 0%, green 100% gives way to the policy's own routing\), and --keep-traffic"
    )
    with pytest.raises(PlanError, match=from_static):
        make_plan([LEARNING_BLUE_GREEN], [CUT_OVER], prune=False, keep_traffic=True)
    canary = live(msgspec.structs.replace(BLUE_GREEN, policy=StaticSettings(weights=[0.9, 0.1])))
    with pytest.raises(PlanError, match=r'^experiment "bg": the update would move its live traffic \(its policy'):
        make_plan([LEARNING_BLUE_GREEN], [canary], prune=False, keep_traffic=True)
    to_static = (
        r'^experiment "bg": the update would move its live traffic \(its policy changes from thompson to static: '
        r"the file's split blue 100%, green 0% takes over from the policy's routing\)"
    )
    with pytest.raises(PlanError, match=to_static):
        make_plan([BLUE_GREEN], [live(LEARNING_BLUE_GREEN)], prune=False, keep_traffic=True)
    # Paused or promoted, the status routes, not the policy: the change moves no traffic and goes.
    paused_cut_over = {**CUT_OVER, "status": "paused"}
    promoted_learning = live(LEARNING_BLUE_GREEN, status="promoted", promoted_arm="blue")
    for spec, state in [(LEARNING_BLUE_GREEN, paused_cut_over), (BLUE_GREEN, promoted_learning)]:
        (update,) = make_plan([spec], [state], prune=False, keep_traffic=True).actions
        assert (update.verb, [change.path for change in update.changes]) == ("update", ["policy"])
    # A change between learning policies moves no static split: not this rule's.
    ucb = msgspec.structs.replace(LEARNING_BLUE_GREEN, policy=UCB1Settings(variance_aware=True))
    assert make_plan([ucb], [live(LEARNING_BLUE_GREEN)], prune=False, keep_traffic=True).actions[0].verb == "update"


def test_patch_changes_everything_of_a_spec_but_the_name_which_is_the_key() -> None:
    # The no-replace design rests on this: should the spec gain a field PATCH cannot change, this fails
    # and a change to it is refused by patch_body (below) instead of deleting and creating.
    assert set(SPEC_FIELDS) - PATCHABLE_FIELDS == {"name"}
    old = {"name": "a", "arms": [], "policy": {}}
    with pytest.raises(PlanError, match=r'experiment "a": name cannot be changed in place \(PATCH changes only arms'):
        patch_body("a", old, {**old, "name": "b"})
