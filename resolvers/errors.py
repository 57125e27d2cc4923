"""The domain's errors. Each carries a stable code; the faces map them to GraphQL codes and HTTP statuses."""

from __future__ import annotations


class DomainError(Exception):
    code = "INTERNAL_SERVER_ERROR"
    status = 500

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class InvalidInput(DomainError):
    """Input a user sent that cannot be accepted; `field` names the argument at fault."""

    code = "BAD_USER_INPUT"
    status = 400

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}", field=field)
        self.problem = problem


class NotFound(DomainError):
    code = "NOT_FOUND"
    status = 404


class Unauthenticated(DomainError):
    code = "UNAUTHENTICATED"
    status = 401


class Forbidden(DomainError):
    code = "FORBIDDEN"
    status = 403


class Unavailable(DomainError):
    """A dependency (the database, LiteLLM's tables) is not there; retrying later may work."""

    code = "SERVICE_UNAVAILABLE"
    status = 503


class ExpectedFailure(Exception):
    """A background job could not do its work for a reason an operator expects (offline, a service away): it is
    counted as a failure and logged as one warning line, without a traceback."""
