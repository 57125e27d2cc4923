"""The domain's errors. Each carries a stable code; the faces map them to GraphQL codes and HTTP statuses."""

from __future__ import annotations


class DomainError(Exception):
    code = "INTERNAL_SERVER_ERROR"
    status = 500
    #: Seconds after which trying again may work (REST sends it as Retry-After, GraphQL as extensions.retryAfter).
    retry_after: int | None = None

    def __init__(self, message: str, *, field: str | None = None, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        if retry_after is not None:
            self.retry_after = max(1, retry_after)


class InvalidInput(DomainError):
    """Input a user sent that cannot be accepted; `field` names the argument at fault."""

    code = "BAD_USER_INPUT"
    status = 400

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}", field=field)
        self.problem = problem


class AlreadyExists(InvalidInput):
    """A create or update that would give a second row what only one may have (a budget per entity and period, a
    name, a rule per target): `field` names the argument. REST answers 409; GraphQL, like any bad argument,
    BAD_USER_INPUT."""

    status = 409


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


class TooManyRequests(DomainError):
    """A client tried too often (wrong keys, or too many calls to an unauthenticated route): wait `retry_after`."""

    code = "TOO_MANY_REQUESTS"
    status = 429

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message, retry_after=retry_after)


#: How long a client is asked to wait while the database is unreachable (REST Retry-After, GraphQL retryAfter).
DATABASE_RETRY_AFTER_SECONDS = 5


def database_unavailable() -> Unavailable:
    """What both faces answer when the database cannot be reached (models/db.py `database_unreachable`)."""
    return Unavailable("the database is unreachable; try again shortly", retry_after=DATABASE_RETRY_AFTER_SECONDS)


class ResponseTooLarge(DomainError):
    """An operation whose answer would pass the caller's response-size budget; `field` names where it stopped."""

    code = "RESPONSE_TOO_LARGE"
    status = 413


class ResponseBudget:
    """The bytes one operation may still answer (SPENDPLANE_MAX_RESPONSE_BYTES). Producers of large values (inline
    exports) take from it as they read, so twenty aliased exports stop at the budget instead of filling memory."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.left = limit

    def take(self, size: int, field: str) -> None:
        if size > self.left:
            self.left = 0
            raise ResponseTooLarge(
                f"the answer would pass {self.limit} bytes (SPENDPLANE_MAX_RESPONSE_BYTES) at {field}: ask for fewer "
                "or smaller fields per operation, or download exports from their url",
                field=field,
            )
        self.left -= size
