"""Experiments as code: TOML files of experiments, read into the API's own `ExperimentSpec`.

One table per experiment, keyed by its name; under it, the body `POST /api/experiments` takes,
with the same field names (README, "Create an experiment"), less the name:

    [experiments.checkout-ranker]
    policy = { kind = "thompson", discount = 0.999 }
    reward = { mode = "explicit", window_s = 86400, bounds = [0, 1] }

    [[experiments.checkout-ranker.arms]]
    name = "v1"
    url = "http://10.0.0.5:9000"

Why `[experiments.NAME]` tables rather than an `[[experiment]]` array with a `name` field, for a
file reviewed in git:

- every header of an experiment's sub-tables repeats its name (`[[experiments.checkout-ranker.arms]]`),
  so each hunk of a diff says which experiment it changes, however many the file holds;
- a name cannot be missing, and it cannot be given twice: TOML itself refuses a table declared
  twice, with the line of the second one;
- a bare TOML key has the alphabet of an experiment name (letters, digits, '-', '_'), so a
  name that needs quotes in the header is one the API would refuse anyway.

TOML has no null. Only one field has a default other than null, `reward.bounds` ([0, 1]), so
only it needs a spelling for null: `bounds = "none"` (unbounded real rewards). Every other
nullable field is null when omitted.

Each experiment is checked exactly as the API checks a creation: `msgspec.convert` into
`ExperimentSpec`, whose constraints and `__post_init__` rules are the API's, and refusals worded
by the API's own `explain`. A `ManifestError` names the file, the experiment and the field path
(`experiments.toml: experiment "checkout-ranker": arms[1].url: must be an http:// or https:// URL
...; got "ftp://x"`), one line per experiment refused; a TOML syntax error names the file and line.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

import msgspec

from bandit.core.models import ExperimentSpec, PolicySettings

#: The policies `policy.kind` may name, from the union the API decodes.
POLICY_KINDS = tuple(str(settings.__struct_config__.tag) for settings in get_args(PolicySettings))

#: The one key of a manifest's top level.
EXPERIMENTS_KEY = "experiments"
#: How a manifest writes JSON null where it means something: `reward.bounds = "none"`.
NULL_SPELLING = "none"

# msgspec ends a validation message with the path of the value it refuses: "... - at `$.arms[1].url`".
_AT_PATH = re.compile(r"^(?P<message>.*) - at `\$(?P<path>[^`]*)`$", re.DOTALL)
_PATH_STEP = re.compile(r"\.([^.\[]+)|\[(\d+)\]")


class ManifestError(ValueError):
    """A manifest that cannot be read or that the API would refuse; the message says where and why."""


@dataclass(frozen=True)
class Manifest:
    """The experiments of one or more files, by name, and the file each came from."""

    experiments: dict[str, ExperimentSpec]
    sources: dict[str, str]

    @property
    def specs(self) -> list[ExperimentSpec]:
        return list(self.experiments.values())


def load_manifests(paths: Iterable[str | Path]) -> Manifest:
    """Read every file; an experiment named by two of them is an error naming both."""
    experiments: dict[str, ExperimentSpec] = {}
    sources: dict[str, str] = {}
    problems: list[str] = []
    for path in paths:
        try:
            manifest = load_manifest(path)
        except ManifestError as error:
            problems.append(str(error))
            continue
        for name, spec in manifest.experiments.items():
            if name in sources:
                problems.append(f'{path}: experiment "{name}": already named in {sources[name]}')
                continue
            experiments[name], sources[name] = spec, str(path)
    if problems:
        raise ManifestError("\n".join(problems))
    return Manifest(experiments, sources)


def load_manifest(path: str | Path) -> Manifest:
    source = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise ManifestError(f"{source}: cannot read the file: {error.strerror or error}") from None
    return parse_manifest(data, source)


def parse_manifest(data: bytes | str, source: str) -> Manifest:
    """The experiments a manifest describes, each validated as `POST /api/experiments` would."""
    try:
        document = msgspec.toml.decode(data)
    except msgspec.DecodeError as error:
        # tomllib's messages end with "(at line L, column C)"; a file that is not UTF-8 has none.
        raise ManifestError(f"{source}: not a valid TOML file: {error}") from None
    tables = _experiment_tables(document, source)
    experiments: dict[str, ExperimentSpec] = {}
    problems: list[str] = []
    for name, table in tables.items():
        try:
            experiments[name] = _experiment(name, table)
        except ValueError as error:
            problems.append(f'{source}: experiment "{name}": {error}')
    if problems:
        raise ManifestError("\n".join(problems))
    return Manifest(experiments, dict.fromkeys(experiments, source))


def _experiment_tables(document: Mapping[str, Any], source: str) -> dict[str, Any]:
    unknown = sorted(set(document) - {EXPERIMENTS_KEY})
    if unknown:
        raise ManifestError(
            f"{source}: unknown top-level key {shown(unknown[0])}: a manifest holds only "
            f"[{EXPERIMENTS_KEY}.NAME] tables, one per experiment"
        )
    tables = document.get(EXPERIMENTS_KEY, {})
    if not isinstance(tables, dict):
        raise ManifestError(
            f"{source}: `{EXPERIMENTS_KEY}` must be a table of [{EXPERIMENTS_KEY}.NAME] tables, "
            f"got {_type_name(tables)}"
        )
    return tables


def _experiment(name: str, table: Any) -> ExperimentSpec:
    if not isinstance(table, dict):
        raise ValueError(f"must be a table ([{EXPERIMENTS_KEY}.{name}]), got {_type_name(table)}")
    if "name" in table:
        raise ValueError(f"name: the table's key names the experiment ([{EXPERIMENTS_KEY}.{name}]); remove this field")
    body = {"name": name, **_with_nulls(table)}
    try:
        return msgspec.convert(body, ExperimentSpec)
    except msgspec.ValidationError as error:
        raise ValueError(describe_refusal(str(error), body)) from None


def _with_nulls(table: dict[str, Any]) -> dict[str, Any]:
    """The table with `reward.bounds = "none"` as the null the API takes."""
    reward = table.get("reward")
    if isinstance(reward, dict) and reward.get("bounds") == NULL_SPELLING:
        return {**table, "reward": {**reward, "bounds": None}}
    return table


def describe_refusal(message: str, body: Any) -> str:
    """msgspec's refusal as `path: what is wrong; got value`, in the API's words.

    The path is relative to the experiment (`arms[1].url`); the value is added when the message
    does not quote it already. Rules of the whole experiment (unique arm names, ...) have no path:
    their message names the fields.
    """
    # Imported here: bandit.api.errors brings in Litestar, which the CLI's other verbs never need.
    from bandit.api.errors import explain

    located = _AT_PATH.match(message)
    if located is None:
        return explain(message)
    path = located["path"].lstrip(".")
    text = explain(located["message"])
    value = _value_at(body, located["path"])
    if path == "policy.kind":
        text = f"{text}: the kinds are {', '.join(POLICY_KINDS)}"
    elif isinstance(value, str | int | float | bool) and not {shown(value), f"'{value}'"} & _quoted(text):
        # "Expected `float`, got `str`" names the type only: show the value too.
        text = f"{text} ({shown(value)})" if ", got `" in text else f"{text}; got {shown(value)}"
    if path == "reward.bounds" and isinstance(value, str):
        text = f'{text}: write bounds = "{NULL_SPELLING}" for unbounded rewards (TOML has no null)'
    return f"{path}: {text}" if path else text


def _quoted(text: str) -> set[str]:
    """The values a message quotes already ('nope', "x")."""
    return set(re.findall(r"'[^']*'|\"[^\"]*\"", text))


def _value_at(body: Any, path: str) -> Any:
    value = body
    for key, index in _PATH_STEP.findall(path):
        try:
            value = value[int(index)] if index else value[key]
        except (LookupError, TypeError, ValueError):
            return None
    return value


def shown(value: Any) -> str:
    """A value as a reader of the manifest recognises it: JSON, strings in double quotes."""
    return json.dumps(value, ensure_ascii=False, default=str)


def _type_name(value: Any) -> str:
    return {dict: "a table", list: "an array", str: "a string", bool: "a boolean"}.get(
        type(value), f"a value of type {type(value).__name__}"
    )
