"""Domain errors of the service, each carrying the HTTP status it answers with.

MabError (Exception)
├── InvalidInput                 422  a payload or parameter is malformed; the message names the field
├── NotAuthenticated             401  no admin bearer token
├── Forbidden                    403  a wrong token
├── DecisionRejected
│   ├── ForgedDecision           403  a decision id whose signature does not verify
│   └── ExpiredDecision          410  a decision id older than the experiment's feedback window
├── ExperimentNotFound           404
├── ArmNotFound                  404
├── ExperimentExists             409
├── TooManyExperiments           409  the deployment holds BANDIT_MAX_EXPERIMENTS already
├── ConcurrentUpdate             409  the experiment changed under a PATCH too many times in a row
├── NothingToRollBack            409  a rollback with no earlier settings kept
├── UnreadableExperiment         409  a stored experiment that today's rules refuse (delete it)
└── StoreUnavailable             503  Redis does not answer; the client should retry (Retry-After)

Redis errors are translated into StoreUnavailable at one boundary: :mod:`bandit.store.connection`.
The errors know no web framework: the API turns them into JSON answers
(:mod:`bandit.api.errors`), and the proxy, which imports none, handles StoreUnavailable too.
"""

from __future__ import annotations


class MabError(Exception):
    """Base of every error the service answers with a 4xx/5xx of its own."""

    status_code = 500

    def __init__(self, detail: str = "", *, status_code: int | None = None, headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.detail = detail
        if status_code is not None:
            self.status_code = status_code
        self.headers = headers or {}

    def __str__(self) -> str:
        # As Litestar's HTTPException, which these errors were before: the status, then the detail.
        return f"{self.status_code}: {self.detail}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.status_code}, {self.detail!r})"


class InvalidInput(MabError):
    status_code = 422


class NotAuthenticated(MabError):
    status_code = 401


class Forbidden(MabError):
    status_code = 403


class DecisionRejected(MabError):
    status_code = 403


class ForgedDecision(DecisionRejected):
    status_code = 403


class ExpiredDecision(DecisionRejected):
    status_code = 410


class ExperimentNotFound(MabError):
    status_code = 404

    def __init__(self, name: str) -> None:
        super().__init__(detail=f"experiment {name!r} does not exist")


class ArmNotFound(MabError):
    status_code = 404


class ExperimentExists(MabError):
    status_code = 409

    def __init__(self, name: str) -> None:
        super().__init__(detail=f"experiment {name!r} already exists")


class TooManyExperiments(MabError):
    status_code = 409

    def __init__(self, limit: int) -> None:
        super().__init__(
            detail=f"the limit of {limit} experiments (BANDIT_MAX_EXPERIMENTS) is reached: "
            "delete one or raise the limit"
        )


class ConcurrentUpdate(MabError):
    status_code = 409


class NothingToRollBack(MabError):
    status_code = 409


class UnreadableExperiment(MabError):
    status_code = 409


class StoreUnavailable(MabError):
    status_code = 503

    def __init__(self, detail: str = "the state store (Redis) is unavailable; retry shortly") -> None:
        super().__init__(detail=detail, headers={"Retry-After": "1"})
