"""The one error tree of cloudlet.

Every error a client can see is a :class:`CloudletError`; each class carries the HTTP status,
the OpenAI error ``type`` and ``code`` it maps to, and the API layer turns it into the OpenAI
envelope in exactly one handler. Foreign exceptions (llama.cpp, YAML, HTTP clients) are
translated at the boundary with ``raise ... from``.

    CloudletError                      500 server_error
    ├── SpecError                      (start-up only: a bad spec file; exit code 2)
    ├── UnprotectedServer              (start-up only: reachable, no way to authenticate; exit 5)
    ├── InvalidRequest                 400 invalid_request_error
    │   ├── ContextLengthExceeded      400 invalid_request_error / context_length_exceeded
    │   ├── PayloadTooLarge            413 invalid_request_error / payload_too_large
    │   ├── LedgerOff                  400 invalid_request_error / ledger_off (admin API)
    │   ├── RequestTimeout             408 invalid_request_error / request_timeout
    │   └── HeadersTooLarge            431 invalid_request_error / headers_too_large
    ├── ModelNotFound                  404 invalid_request_error / model_not_found
    ├── KeyNotFound                    404 invalid_request_error / key_not_found (admin API)
    ├── RequestNotFound                404 invalid_request_error / request_not_found (admin API)
    ├── ResponseNotFound               404 invalid_request_error / response_not_found
    ├── WrongModelKind                 400 invalid_request_error / model_not_supported
    ├── AuthenticationError            401 invalid_request_error / invalid_api_key
    ├── PermissionDenied               403 permission_error
    │   ├── ModelNotPermitted          403 permission_error / model_not_permitted (policy)
    │   ├── ModelNotPermittedForKey    403 permission_error / model_not_permitted_for_key
    │   └── BudgetCurrencyMismatch     403 permission_error / budget_currency_mismatch
    ├── RateLimited                    429 rate_limit_error / rate_limit_exceeded (Retry-After)
    ├── BudgetExceeded                 429 insufficient_quota / budget_exceeded (Retry-After)
    ├── BudgetExhausted                429 insufficient_quota / cloud_budget_exhausted (Retry-After)
    ├── StorageUnavailable             503 server_error / storage_unavailable (Retry-After;
    │                                  at start-up: the ledger is unreachable, exit code 4)
    └── EngineError                    500 server_error
        ├── EngineOverloaded           503 server_error / engine_overloaded  (Retry-After)
        ├── EngineUnavailable          503 server_error / engine_unavailable (Retry-After)
        └── UpstreamError              502 server_error / upstream_error
            ├── UpstreamTimeout        504 server_error / upstream_timeout
            └── UpstreamRateLimited    429 rate_limit_error / upstream_rate_limited (Retry-After)

The gateway fails over to the next target on ``EngineOverloaded``, ``EngineUnavailable`` and
``UpstreamError`` raised before the first token; after it, they end the stream (an SSE error
event).
"""

from __future__ import annotations


class CloudletError(Exception):
    """Base of every error cloudlet raises on purpose."""

    status: int = 500
    type: str = "server_error"
    code: str | None = None

    def __init__(
        self, message: str, *, param: str | None = None, retry_after: int | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self._retry_after = None if retry_after is None else max(1, retry_after)

    @property
    def retry_after(self) -> int | None:
        """Seconds a client should wait before retrying (the Retry-After header), if known."""
        return self._retry_after


class SpecError(CloudletError):
    """The spec (cloudlet.yaml, CLOUDLET_* variables, flags) is invalid.

    ``source`` names the file (or "environment"), ``problems`` lists (field, what was expected).
    """

    def __init__(self, source: str, problems: list[tuple[str, str]]) -> None:
        lines = "\n".join(f"  {field}: {why}" for field, why in problems)
        super().__init__(f"invalid spec in {source}:\n{lines}")
        self.source = source
        self.problems = problems


class UnprotectedServer(CloudletError):
    """Start-up only: the server would listen beyond loopback with no way to authenticate
    (neither ``CLOUDLET_ADMIN_KEY`` nor an active API key)."""


class StorageUnavailable(CloudletError):
    """The ledger or the counters (limits, budgets) cannot be reached, or did not answer in
    time. Per request a 503 with ``Retry-After``; at start-up (the ledger) it stops the server.
    Messages name the store without its password."""

    status = 503
    code = "storage_unavailable"

    def __init__(self, message: str, *, retry_after: int = 1) -> None:
        super().__init__(message, retry_after=retry_after)


class InvalidRequest(CloudletError):
    status = 400
    type = "invalid_request_error"


class ContextLengthExceeded(InvalidRequest):
    code = "context_length_exceeded"


class PayloadTooLarge(InvalidRequest):
    status = 413
    code = "payload_too_large"


class LedgerOff(InvalidRequest):
    """The admin API's keys and usage need a ledger, and ``storage.ledger`` is ``off``."""

    code = "ledger_off"


class RequestTimeout(InvalidRequest):
    """The request's head or body did not arrive in time (a slow or stalled client)."""

    status = 408
    code = "request_timeout"


class HeadersTooLarge(InvalidRequest):
    status = 431
    code = "headers_too_large"


class ModelNotFound(CloudletError):
    status = 404
    type = "invalid_request_error"
    code = "model_not_found"

    def __init__(self, model: str) -> None:
        super().__init__(
            f"The model `{model}` does not exist. GET /v1/models lists the models served here.",
            param="model",
        )


class KeyNotFound(CloudletError):
    status = 404
    type = "invalid_request_error"
    code = "key_not_found"


class RequestNotFound(CloudletError):
    """No ledger row has this request id (ours or the client's)."""

    status = 404
    type = "invalid_request_error"
    code = "request_not_found"


class ResponseNotFound(CloudletError):
    """A ``previous_response_id`` (or a response retrieved by id, ``param`` None) that names
    no response stored for this key."""

    status = 404
    type = "invalid_request_error"
    code = "response_not_found"

    def __init__(self, response_id: str, *, param: str | None = "previous_response_id") -> None:
        what = "Previous response" if param == "previous_response_id" else "Response"
        super().__init__(
            f"{what} with id '{response_id}' not found. Responses are kept only "
            "when created with store: true, and only for the key that created them.",
            param=param,
        )


class WrongModelKind(InvalidRequest):
    code = "model_not_supported"


class PermissionDenied(CloudletError):
    status = 403
    type = "permission_error"


class ModelNotPermitted(PermissionDenied):
    """The openness policy refuses this model; ``rule`` names the rule it broke."""

    code = "model_not_permitted"

    def __init__(self, message: str, *, rule: str | None = None) -> None:
        super().__init__(message, param="model")
        self.rule = rule


class AuthenticationError(CloudletError):
    """No API key, or one that is unknown or revoked. The message never repeats the key."""

    status = 401
    type = "invalid_request_error"
    code = "invalid_api_key"


class ModelNotPermittedForKey(PermissionDenied):
    """The API key is scoped to other models (``keys create --models``)."""

    code = "model_not_permitted_for_key"

    def __init__(self, message: str, *, param: str | None = "model") -> None:
        super().__init__(message, param=param)


class BudgetCurrencyMismatch(PermissionDenied):
    """A key's budget is in another currency than the deployment bills in (created before the
    deployment's ``currency`` changed): it cannot be charged until an admin re-creates it."""

    code = "budget_currency_mismatch"


class RateLimited(CloudletError):
    """A key's requests-per-minute or tokens-per-minute limit; ``limit`` says which."""

    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, limit: str, retry_after: int) -> None:
        super().__init__(message, retry_after=retry_after)
        self.limit = limit


class BudgetExceeded(CloudletError):
    """A key's budget for the period (UTC day or month) cannot cover the request's reservation."""

    status = 429
    type = "insufficient_quota"
    code = "budget_exceeded"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message, retry_after=retry_after)


class EngineError(CloudletError):
    """The engine failed while serving a request."""


class _RetryableEngineError(EngineError):
    status = 503

    def __init__(self, message: str, *, retry_after: int = 1) -> None:
        super().__init__(message, retry_after=retry_after)


class EngineOverloaded(_RetryableEngineError):
    code = "engine_overloaded"


class EngineUnavailable(_RetryableEngineError):
    code = "engine_unavailable"


class UpstreamError(EngineError):
    """A remote engine's upstream failed: refused the connection, answered 5xx, broke off, or
    sent a malformed reply (see :mod:`cloudlet.engines.openai_reply`).

    Messages name the model, never the upstream's URL, key or headers.
    """

    status = 502
    code = "upstream_error"


class UpstreamTimeout(UpstreamError):
    status = 504
    code = "upstream_timeout"


class UpstreamRateLimited(UpstreamError):
    status = 429
    type = "rate_limit_error"
    code = "upstream_rate_limited"

    def __init__(self, message: str, *, retry_after: int = 1) -> None:
        super().__init__(message, retry_after=retry_after)


class BudgetExhausted(CloudletError):
    """A route's cloud budget is spent and its local targets cannot take the request."""

    status = 429
    type = "insufficient_quota"
    code = "cloud_budget_exhausted"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message, retry_after=retry_after)
