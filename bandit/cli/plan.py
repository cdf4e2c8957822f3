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

The lifecycle (pause, promote, resume) is not part of a manifest and an apply leaves it as it is.
A promotion of a static split moves its weights, though, and those are in the file: the next
apply shows them going back to the file's and restores them. Write the promoted split into the
file to keep it.
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

    def to_json(self) -> dict[str, Any]:
        answer: dict[str, Any] = {"action": self.verb, "experiment": self.name}
        if self.verb == "update":
            answer["changes"] = [change.to_json() for change in self.changes]
        if self.verb == "create":
            answer["spec"] = self.body
        return answer


@dataclass(frozen=True)
class Plan:
    actions: tuple[Action, ...]
    #: Live experiments no file names, left alone (no prune).
    kept: tuple[str, ...] = field(default=())

    @property
    def pending(self) -> list[Action]:
        """The actions that call the service, in order: creations, updates, deletions."""
        order = {"create": 0, "update": 1, "delete": 2}
        return sorted((a for a in self.actions if a.verb != "unchanged"), key=lambda a: order[a.verb])

    def count(self, verb: Verb) -> int:
        return sum(action.verb == verb for action in self.actions)

    def to_json(self) -> dict[str, Any]:
        return {"actions": [action.to_json() for action in self.actions], "kept": list(self.kept)}

    def describe(self) -> str:
        """The plan for a person: one line per experiment, one per changed field, then the totals."""
        return "\n".join(self._lines())

    def _lines(self) -> Iterator[str]:
        marks = {"create": "+", "update": "~", "delete": "-", "unchanged": "="}
        for action in self.actions:
            # A paused or promoted experiment stays so: say it, as the new settings will not route yet.
            pinned = action.verb == "update" and action.status not in (None, "running")
            note = f" (stays {action.status}: apply changes no lifecycle)" if pinned else ""
            yield f"{marks[action.verb]} {action.verb} {action.name}{note}"
            for change in action.changes:
                yield f"    {change}"
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


def make_plan(desired: Sequence[ExperimentSpec], live: Sequence[Mapping[str, Any]], *, prune: bool) -> Plan:
    """Every experiment of `desired` against the service's `live` list; deletions only with `prune`."""
    live_by_name = {str(experiment["name"]): experiment for experiment in live}
    wanted = {spec.name for spec in desired}
    if prune and not wanted and live_by_name:
        raise PlanError(
            f"--prune with files that name no experiment would delete all {len(live_by_name)} experiments "
            "of the service; refused (delete them with `mab delete NAME` if that is what you want)"
        )
    actions = [_action(spec, live_by_name.get(spec.name)) for spec in desired]
    others = sorted(set(live_by_name) - wanted)
    if prune:
        actions += [Action("delete", name, status=str(live_by_name[name].get("status"))) for name in others]
    return Plan(tuple(actions), kept=() if prune else tuple(others))


def _action(spec: ExperimentSpec, live: Mapping[str, Any] | None) -> Action:
    new = normalised(spec)
    if live is None:
        return Action("create", spec.name, body=new)
    old = normalised(live_spec(live))
    status = str(live.get("status", "running"))
    changes = field_changes(old, new)
    if not changes:
        return Action("unchanged", spec.name, status=status)
    return Action("update", spec.name, body=patch_body(spec.name, old, new), changes=tuple(changes), status=status)


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
