"""What `mab apply` would change: the difference between manifests and the live service.

Both sides are compared in one normal form: the `ExperimentSpec` with every default the service
fills in, as JSON (what `GET /api/experiments/{name}` answers, less the lifecycle fields). A file
that says `weight = 1` and a service that answers `"weight": 1.0` agree, so applying a file a
second time finds nothing to do.

Each experiment the files name is one of:

- create: the service has none of that name (`POST /api/experiments`);
- update: fields differ (`PATCH`, with the changed ones of arms, policy, reward and stopping,
  each sent whole). Statistics, status and rollback history are kept, as for any PATCH.
- unchanged.

An experiment of the service that no file names is deleted only with `prune`: the files are then
the whole truth about that service, and everything else on it goes (the dry run lists it first).
Without `prune` it is listed as kept. A prune with files that name no experiment at all is
refused: it would delete everything, which is more likely a wrong path than an intent.

PATCH may change everything of a spec but its name, and the name is the key an experiment is
matched by: a renamed table is a new experiment (create) and the old one stays until pruned, with
its statistics. So no change ever needs a delete and create, and there is no flag for one: should
the spec gain a field PATCH cannot change, a change to it is refused (PlanError) rather than
replaced silently, which would forget what the experiment has learned.

Traffic. The lifecycle (pause, promote, resume) is not part of a manifest and an apply sends no
lifecycle call, but two kinds of update still move traffic, and the plan says so on the action:

- A promotion of a static split (blue/green, canary) is not a status: it rewrites the split's
  weights, which are settings, and the file is the truth about settings. So the next apply puts
  the file's split back. That is right for a file that is the source of truth, but never silent:
  the plan shows the split's shares old → new and, when the live split puts all traffic on one
  arm, that a promotion made outside the file is being undone. `keep_traffic` (`--keep-traffic`)
  keeps the live split instead, for a job that applies on every merge while people cut over with
  `mab promote`: the file's static weights are then ignored where both sides are static splits of
  the same arms, and any other difference of the split is refused rather than guessed.
- A policy that becomes, or stops being, a static split moves the traffic of an experiment the
  policy routes (one running, not paused or promoted) by construction: the split gives way to the
  learning policy, or takes over from it. The plan notes a cut-over it ends (a live split with all
  traffic on one arm); with `keep_traffic` such an update is refused.
- A PATCH that removes the promoted arm of a learning experiment, or makes it a shadow, ends the
  promotion (the service sets it running again, bandit/api/experiments.py `update`), and one that
  changes a paused experiment's first serving arm moves all its traffic to the new one. The plan
  says which; with `keep_traffic` such an update is refused.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec

from bandit.cli.manifest import shown
from bandit.core.models import Experiment, ExperimentPatch, ExperimentSpec

#: What PATCH may replace, and what a spec holds: from the API's own models.
PATCHABLE_FIELDS = frozenset(f.name for f in msgspec.structs.fields(ExperimentPatch))
SPEC_FIELDS = tuple(f.name for f in msgspec.structs.fields(ExperimentSpec))

Verb = Literal["create", "update", "unchanged", "delete"]


class PlanError(ValueError):
    """A difference no call can make safely, or a live experiment this client cannot read."""


class _Absent:
    """The old side of an added list element, the new side of a removed one."""

    def __repr__(self) -> str:
        return "(none)"


ABSENT: Any = _Absent()


@dataclass(frozen=True)
class FieldChange:
    path: str  # as in the manifest: "arms[1].weight", "policy"
    old: Any
    new: Any

    def __str__(self) -> str:
        return f"{self.path}: {_value(self.old)} → {_value(self.new)}"

    def to_json(self) -> dict[str, Any]:
        sides = {"old": self.old, "new": self.new}
        return {"path": self.path, **{k: v for k, v in sides.items() if v is not ABSENT}}


@dataclass(frozen=True)
class Action:
    verb: Verb
    name: str
    #: create: the POST body; update: the PATCH body; otherwise None.
    body: dict[str, Any] | None = None
    changes: tuple[FieldChange, ...] = ()
    #: The live experiment's lifecycle status (running, paused, promoted), when it exists.
    status: str | None = None
    #: What the update does to the lifecycle, when the experiment is paused or promoted.
    lifecycle: str | None = None
    #: What the action does to traffic that its field changes do not show (a split restored or kept).
    notes: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        answer: dict[str, Any] = {"action": self.verb, "experiment": self.name}
        if self.verb == "update":
            answer["changes"] = [change.to_json() for change in self.changes]
        if self.verb == "create":
            answer["spec"] = self.body
        if self.lifecycle:
            answer["lifecycle"] = self.lifecycle
        if self.notes:
            answer["notes"] = list(self.notes)
        return answer


@dataclass(frozen=True)
class Plan:
    actions: tuple[Action, ...]
    #: Live experiments no file names, left alone (no prune).
    kept: tuple[str, ...] = field(default=())

    @property
    def pending(self) -> list[Action]:
        """The actions that call the service, in order: creations, updates, deletions.

        Creations before deletions, so that an apply stopped half-way (a refusal, the service out of
        reach) never leaves the service with fewer experiments than either the old or the new state:
        a rename under --prune creates the new experiment before it deletes the old one. The price is
        at the limit (BANDIT_MAX_EXPERIMENTS): the creation is refused while the deletion that would
        free its slot is pending, and `mab apply` says so and how to go on.
        """
        order = {"create": 0, "update": 1, "delete": 2}
        return sorted((a for a in self.actions if a.verb != "unchanged"), key=lambda a: order[a.verb])

    def count(self, verb: Verb) -> int:
        return sum(action.verb == verb for action in self.actions)

    def named(self, verb: Verb) -> list[str]:
        return [action.name for action in self.actions if action.verb == verb]

    def to_json(self) -> dict[str, Any]:
        return {"actions": [action.to_json() for action in self.actions], "kept": list(self.kept)}

    def describe(self) -> str:
        """The plan for a person: one line per experiment, one per changed field, then the totals."""
        return "\n".join(self._lines())

    def _lines(self) -> Iterator[str]:
        marks = {"create": "+", "update": "~", "delete": "-", "unchanged": "="}
        for action in self.actions:
            note = f" ({action.lifecycle})" if action.lifecycle else ""
            yield f"{marks[action.verb]} {action.verb} {action.name}{note}"
            for change in action.changes:
                yield f"    {change}"
            for line in action.notes:
                yield f"    ! {line}"
        if self.kept:
            yield f"  not in the files, kept (--prune deletes them): {', '.join(self.kept)}"
        if not self.pending:
            yield f"no changes: {self.count('unchanged')} experiment(s) up to date"
        else:
            yield (
                f"{self.count('create')} to create, {self.count('update')} to update, "
                f"{self.count('delete')} to delete, {self.count('unchanged')} unchanged"
            )


def normalised(spec: ExperimentSpec) -> dict[str, Any]:
    """The spec with its defaults, as the service's JSON has it (lists, not tuples)."""
    normal: dict[str, Any] = msgspec.json.decode(msgspec.json.encode(spec))
    return normal


def live_spec(experiment: Mapping[str, Any]) -> ExperimentSpec:
    """The spec part of an experiment the service answered (`GET /api/experiments/{name}`)."""
    try:
        stored = msgspec.convert(experiment, Experiment)
    except msgspec.ValidationError as error:
        name = experiment.get("name", "?")
        raise PlanError(f"the service answered an experiment {name!r} this client cannot read: {error}") from None
    return ExperimentSpec(**{name: getattr(stored, name) for name in SPEC_FIELDS})


def make_plan(
    desired: Sequence[ExperimentSpec], live: Sequence[Mapping[str, Any]], *, prune: bool, keep_traffic: bool = False
) -> Plan:
    """Every experiment of `desired` against the service's `live` list; deletions only with `prune`.

    With `keep_traffic` no update moves live traffic: static splits keep their live weights, and
    an update that would end a promotion, move a paused experiment's traffic, or turn a routing
    policy from or to a static split is refused.
    """
    live_by_name = {str(experiment["name"]): experiment for experiment in live}
    wanted = {spec.name for spec in desired}
    if prune and not wanted and live_by_name:
        raise PlanError(
            f"--prune with files that name no experiment would delete all {len(live_by_name)} experiments "
            "of the service; refused (delete them with `mab delete NAME` if that is what you want)"
        )
    actions = [_action(spec, live_by_name.get(spec.name), keep_traffic=keep_traffic) for spec in desired]
    others = sorted(set(live_by_name) - wanted)
    if prune:
        actions += [Action("delete", name, status=str(live_by_name[name].get("status"))) for name in others]
    return Plan(tuple(actions), kept=() if prune else tuple(others))


def _action(spec: ExperimentSpec, live: Mapping[str, Any] | None, *, keep_traffic: bool) -> Action:
    new = normalised(spec)
    if live is None:
        return Action("create", spec.name, body=new)
    old = normalised(live_spec(live))
    status = str(live.get("status", "running"))
    new, notes = _static_split(spec.name, status, old, new, keep_traffic=keep_traffic)
    changes = field_changes(old, new)
    if not changes:
        return Action("unchanged", spec.name, status=status, notes=notes)
    lifecycle, moves_traffic = _lifecycle(status, live.get("promoted_arm"), old, new)
    if moves_traffic and keep_traffic:
        raise PlanError(
            f'experiment "{spec.name}": the update would move its live traffic ({lifecycle}), and --keep-traffic '
            "keeps it as it is: change the lifecycle first (`mab resume` or `mab promote`), or apply without "
            "--keep-traffic"
        )
    body = patch_body(spec.name, old, new)
    return Action(
        "update", spec.name, body=body, changes=tuple(changes), status=status, lifecycle=lifecycle, notes=notes
    )


# -- traffic: what an update does to where requests go ------------------------------------------------------
def _static_split(
    name: str, status: str, old: dict[str, Any], new: dict[str, Any], *, keep_traffic: bool
) -> tuple[dict[str, Any], tuple[str, ...]]:
    """The settings to apply, and what they do to a static split that the live one differs from."""
    live_split, file_split = split_shares(old), split_shares(new)
    if (live_split is None) != (file_split is None):
        return new, _static_or_learning(name, status, old, new, keep_traffic=keep_traffic)
    if live_split is None or file_split is None or live_split == file_split:
        return new, ()
    if keep_traffic:
        # Only where the arms are the same ones: a split over other arms would be a guess.
        if _arm_roles(old) != _arm_roles(new):
            raise PlanError(
                f'experiment "{name}": --keep-traffic cannot keep the live split ({_shares(live_split)}): the file '
                "changes which arms there are or which serve; write the split you want into the file and apply "
                "without --keep-traffic"
            )
        kept_arms = [{**arm, "weight": live["weight"]} for arm, live in zip(new["arms"], old["arms"], strict=True)]
        kept = {**new, "policy": old["policy"], "arms": kept_arms}
        kept_note = (
            f"traffic split kept as live (--keep-traffic): {_shares(live_split)}; the file's is {_shares(file_split)}"
        )
        return kept, (kept_note,)
    notes = [f"traffic split: {_shares(live_split)} → {_shares(file_split)} (the file's split)"]
    whole = _whole(live_split)
    if whole is not None and file_split.get(whole) != 1.0:
        notes.append(
            f"restores the file's split: the live weights put all traffic on {whole} (a promotion made outside "
            "the file?); to keep that cut-over, write it into the file or apply with --keep-traffic"
        )
    return new, tuple(notes)


def _static_or_learning(
    name: str, status: str, old: Mapping[str, Any], new: Mapping[str, Any], *, keep_traffic: bool
) -> tuple[str, ...]:
    """A policy that becomes, or stops being, a static split: the split no longer routes, or starts to.

    That moves the traffic by construction, so `keep_traffic` refuses it, and a cut-over it ends is
    noted. Only while the policy routes: paused or promoted, the status does (`Experiment.pinned_arm`),
    and the update moves nothing until a `mab resume`, which moves traffic anyway.
    """
    if status != "running":
        return ()
    live_split, file_split = split_shares(old), split_shares(new)
    old_kind, new_kind = old["policy"].get("kind"), new["policy"].get("kind")
    if keep_traffic:
        if live_split is not None:
            moved = f"the live split {_shares(live_split)} gives way to the policy's own routing"
        else:
            moved = f"the file's split {_shares(file_split or {})} takes over from the policy's routing"
        raise PlanError(
            f'experiment "{name}": the update would move its live traffic (its policy changes from {old_kind} to '
            f"{new_kind}: {moved}), and --keep-traffic keeps it as it is: leave the policy {old_kind} in the file, "
            "or apply without --keep-traffic"
        )
    whole = None if live_split is None else _whole(live_split)
    if whole is None:
        return ()
    serving = ", ".join(str(arm["name"]) for arm in new["arms"] if not arm["shadow"])
    return (
        f"ends the cut-over to {whole}: the policy routes again ({new_kind}, over {serving}); to keep the cut-over, "
        f"keep the file's policy static with all weight on {whole}",
    )


def _whole(split: Mapping[str, float]) -> str | None:
    """The arm a split puts all traffic on (what `mab promote` leaves), if one."""
    return next((arm for arm, share in split.items() if share == 1.0), None)


def split_shares(spec: Mapping[str, Any]) -> dict[str, float] | None:
    """A static split's share of the traffic per serving arm (normalised spec); None for a learning policy."""
    if spec["policy"].get("kind") != "static":
        return None
    arms = spec["arms"]
    weights = spec["policy"].get("weights")
    if weights is None:
        weights = [arm["weight"] for arm in arms]
    serving = {arm["name"]: float(weight) for arm, weight in zip(arms, weights, strict=False) if not arm["shadow"]}
    total = sum(serving.values())
    return {arm: weight / total if total else 0.0 for arm, weight in serving.items()}


def _shares(split: Mapping[str, float]) -> str:
    return ", ".join(f"{arm} {round(share * 100, 1):g}%" for arm, share in split.items())


def _arm_roles(spec: Mapping[str, Any]) -> list[tuple[str, bool]]:
    return [(arm["name"], bool(arm["shadow"])) for arm in spec["arms"]]


def _lifecycle(
    status: str, promoted_arm: Any, old: Mapping[str, Any], new: Mapping[str, Any]
) -> tuple[str | None, bool]:
    """What an update of a paused or promoted experiment does to it, and whether that moves traffic."""
    if status == "promoted":
        # The service's own rule (bandit/api/experiments.py, `update`): no promotion to an arm that
        # is gone or only shadows, since neither serves the traffic.
        arm = next((arm for arm in new["arms"] if arm["name"] == promoted_arm), None)
        if arm is None or arm["shadow"]:
            does = "removes" if arm is None else "makes a shadow"
            return f"ends the promotion of {promoted_arm}, which the file {does}: the policy routes again", True
        return f"stays promoted to {promoted_arm}: apply changes no lifecycle", False
    if status == "paused":
        control, new_control = _control(old), _control(new)
        if control != new_control:
            return (
                f"stays paused, but all its traffic moves from {control} to {new_control}, the new first serving arm",
                True,
            )
        return "stays paused: apply changes no lifecycle", False
    return None, False


def _control(spec: Mapping[str, Any]) -> str | None:
    """The first serving arm: where a paused experiment sends all its traffic."""
    return next((str(arm["name"]) for arm in spec["arms"] if not arm["shadow"]), None)


def patch_body(name: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The PATCH that turns `old` into `new`: each changed top-level field, whole."""
    changed = [key for key in SPEC_FIELDS if old.get(key) != new.get(key)]
    unpatchable = [key for key in changed if key not in PATCHABLE_FIELDS]
    if unpatchable:
        raise PlanError(
            f'experiment "{name}": {", ".join(unpatchable)} cannot be changed in place (PATCH changes only '
            f"{', '.join(sorted(PATCHABLE_FIELDS))}); to change it, delete the experiment and apply again, "
            "which forgets its statistics"
        )
    return {key: new[key] for key in changed}


def field_changes(old: Any, new: Any, path: str = "") -> list[FieldChange]:
    """Each differing leaf, by its manifest path; a policy of another kind is one change, whole."""
    if isinstance(old, dict) and isinstance(new, dict):
        if old.get("kind") != new.get("kind"):
            return [FieldChange(path, old, new)]
        changes: list[FieldChange] = []
        for key in [*new, *(k for k in old if k not in new)]:
            changes += field_changes(old.get(key, ABSENT), new.get(key, ABSENT), f"{path}.{key}" if path else key)
        return changes
    if isinstance(old, list) and isinstance(new, list) and any(isinstance(x, dict) for x in [*old, *new]):
        # Arms are compared by position: their order means something (the first serving arm is the
        # control, static weights go by position), so a reordering is a change.
        changes = []
        for index in range(max(len(old), len(new))):
            before = old[index] if index < len(old) else ABSENT
            after = new[index] if index < len(new) else ABSENT
            changes += field_changes(before, after, f"{path}[{index}]")
        return changes
    return [] if old == new else [FieldChange(path, old, new)]


def _value(value: Any) -> str:
    if value is ABSENT:
        return "(none)"
    if isinstance(value, dict):
        # A whole arm or policy: its fields that say something, not every null.
        return shown({k: v for k, v in value.items() if v is not None})
    return shown(value)
