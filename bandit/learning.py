"""How each reward updates an experiment's statistics in Redis, from its policy settings.

The Lua feedback script applies these rules; `policies.StatisticsTracker` is the same
arithmetic in process.
"""

from __future__ import annotations

from dataclasses import dataclass

from bandit.models import ChangeDetectionSettings, Experiment, GradientSettings, LearningSettings


@dataclass(frozen=True, slots=True)
class ObservationRules:
    """Arguments of the feedback script that depend on the experiment's policy."""

    discount: float = 1.0
    change_detection: ChangeDetectionSettings | None = None
    gradient: GradientSettings | None = None
    # Arms whose policy state is shared (gradient softmax, reset of every arm).
    serving_arms: tuple[str, ...] = ()

    def script_args(self, now_s: int) -> list[str | int]:
        detector = self.change_detection
        gradient = self.gradient
        return [
            repr(self.discount),
            repr(detector.delta) if detector else "",
            repr(detector.threshold) if detector else "",
            detector.action if detector else "",
            repr(gradient.step_size) if gradient else "",
            repr(gradient.momentum) if gradient else "",
            int(gradient.baseline) if gradient else 0,
            now_s,
            len(self.serving_arms),
            *self.serving_arms,
        ]


def observation_rules(experiment: Experiment) -> ObservationRules:
    policy = experiment.policy
    serving = tuple(arm.name for arm in experiment.arms if not arm.shadow)
    if not isinstance(policy, LearningSettings):
        return ObservationRules(serving_arms=serving)
    return ObservationRules(
        discount=policy.discount,
        change_detection=policy.change_detection,
        gradient=policy if isinstance(policy, GradientSettings) else None,
        serving_arms=serving,
    )


def policy_discount(experiment: Experiment) -> float:
    policy = experiment.policy
    return policy.discount if isinstance(policy, LearningSettings) else 1.0
