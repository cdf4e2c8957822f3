"""Path parameters shared by the API's and the dashboard's routes."""

from __future__ import annotations

from typing import Annotated

from litestar.params import Parameter

from bandit.core.models import NAME_PATTERN, NAME_RULE

#: The `{name}` of a URL: checked like a stored name, so no other text reaches a Redis key.
ExperimentName = Annotated[
    str, Parameter(min_length=1, max_length=64, pattern=NAME_PATTERN, description=f"experiment name: {NAME_RULE}")
]
