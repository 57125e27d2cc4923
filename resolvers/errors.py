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
