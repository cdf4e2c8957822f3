"""The core every other part may import: the domain model, settings, errors, decision ids and their
keyring, the policy adapter (experiment + counters -> policy and statistics), and the interfaces
the HTTP surfaces ask of the routing side. No I/O and no web framework here."""

from __future__ import annotations

from bandit.core.counters import ArmCounters
from bandit.core.decision_ids import Decision, DecisionSigner
from bandit.core.errors import MabError, StoreUnavailable
from bandit.core.keyring import SigningKey
from bandit.core.models import ArmSpec, Experiment, ExperimentPatch, ExperimentSpec, PolicySettings, RewardSpec
from bandit.core.payloads import ExperimentStats, FeedbackItem, FeedbackRequest, FeedbackResult
from bandit.core.policy_adapter import ObservationRules, build_policy, experiment_stats, policy_statistics
from bandit.core.ports import HealthView, Routing
from bandit.core.settings import Settings, SettingsError, load_settings

__all__ = [
    "ArmCounters",
    "ArmSpec",
    "Decision",
    "DecisionSigner",
    "Experiment",
    "ExperimentPatch",
    "ExperimentSpec",
    "ExperimentStats",
    "FeedbackItem",
    "FeedbackRequest",
    "FeedbackResult",
    "HealthView",
    "MabError",
    "ObservationRules",
    "PolicySettings",
    "RewardSpec",
    "Routing",
    "Settings",
    "SettingsError",
    "SigningKey",
    "StoreUnavailable",
    "build_policy",
    "experiment_stats",
    "load_settings",
    "policy_statistics",
]
