"""Every hash field the Lua scripts use is declared in bandit/store/keys.py, and every declared one is used."""

from __future__ import annotations

import re
from importlib import resources

from bandit.store import keys

# Quoted words in the scripts that are not field names: script arguments' values and a JSON field.
_NOT_FIELDS = {"reset_arm", "reset_all", "push", "pop", "version"}
_ARM_HELPERS = [
    keys.decisions_field,
    keys.errors_field,
    keys.mirror_dropped_field,
    keys.expected_field,
    keys.rewards_field,
    keys.reward_sum_field,
    keys.reward_sq_field,
    keys.policy_pulls_field,
    keys.policy_sum_field,
    keys.policy_sq_field,
    keys.policy_step_field,
    keys.preference_field,
    keys.changes_field,
    keys.last_change_field,
    keys.p_best_field,
    keys.mean_field,
]


def _lua_literals() -> set[str]:
    scripts = resources.files("bandit.store.lua")
    files = [entry for entry in scripts.iterdir() if entry.name.endswith(".lua")]
    # Every script LuaScripts registers is read, so a new one cannot slip past these checks.
    registered = {
        "create_experiment",
        "update_experiment",
        "record_feedback",
        "record_decisions",
        "read_decisions",
        "hold_lease",
    }
    assert {entry.name.removesuffix(".lua") for entry in files} == registered
    sources = [entry.read_text(encoding="utf-8") for entry in files]
    code = [re.sub(r"--.*", "", source) for source in sources]  # comments hold apostrophes
    return {literal for source in code for literal in re.findall(r"'([^']*)'", source)}


def test_every_field_prefix_the_scripts_use_is_declared() -> None:
    prefixes = {literal for literal in _lua_literals() if literal.endswith(":")}
    declared = set(keys.ARM_FIELD_PREFIXES) | set(keys.SERIES_ARM_FIELD_PREFIXES) | {keys.SERIES_LATENCY_PREFIX}
    assert prefixes, "no field prefix found: the pattern no longer matches the scripts"
    assert prefixes <= declared, f"undeclared in keys.py: {sorted(prefixes - declared)}"


def test_every_plain_field_the_scripts_use_is_declared() -> None:
    words = {literal for literal in _lua_literals() if re.fullmatch(r"[a-z_]+", literal)} - _NOT_FIELDS
    declared = {
        keys.INCARNATION_FIELD,
        keys.STEP_FIELD,
        keys.GRADIENT_BASELINE_FIELD,
        keys.GRADIENT_BASELINE_COUNT_FIELD,
        keys.AUDIT_ENTRY_FIELD,
    }
    assert words == declared


def test_every_declared_per_arm_prefix_is_written_by_a_script_or_a_helper() -> None:
    from_helpers = {helper("arm").removesuffix("arm") for helper in _ARM_HELPERS}
    used = {literal for literal in _lua_literals() if literal.endswith(":")} | from_helpers
    declared = set(keys.ARM_FIELD_PREFIXES) | set(keys.SERIES_ARM_FIELD_PREFIXES)
    assert declared <= used, f"declared but never used: {sorted(declared - used)}"
    assert from_helpers <= declared


def test_every_key_of_an_experiment_carries_its_hash_tag() -> None:
    experiment_keys = [
        keys.config("x"),
        keys.counters_hash("x"),
        keys.latency_histogram("x"),
        keys.series("x", "inc", 1),
        keys.config_history("x"),
        keys.feedback_seen("x", "nonce"),
        keys.audit_log("x"),
        keys.autopilot_lease("x"),
        keys.autopilot_verdict("x"),
        keys.decision_log("x"),
    ]
    assert all(key.startswith("mab:{x}:") for key in experiment_keys)
