"""The one error tree of cloudlet.

Every error a client can see is a :class:`CloudletError`; each class carries the HTTP status,
the OpenAI error ``type`` and ``code`` it maps to, and the API layer turns it into the OpenAI
envelope in exactly one handler. Foreign exceptions (llama.cpp, YAML, HTTP clients) are
translated at the boundary with ``raise ... from``.

    CloudletError                      500 server_error
    ├── SpecError                      (start-up only: a bad spec file; exit code 2)
    ├── InvalidRequest                 400 invalid_request_error
    │   ├── ContextLengthExceeded      400 invalid_request_error / context_length_exceeded
    │   └── PayloadTooLarge            413 invalid_request_error / payload_too_large
    ├── ModelNotFound                  404 invalid_request_error / model_not_found
    ├── WrongModelKind                 400 invalid_request_error / model_not_supported
    └── EngineError                    500 server_error
        ├── EngineOverloaded           503 server_error / engine_overloaded  (Retry-After)
        └── EngineUnavailable          503 server_error / engine_unavailable (Retry-After)
"""

from __future__ import annotations


class CloudletError(Exception):
    """Base of every error cloudlet raises on purpose."""

    status: int = 500
    type: str = "server_error"
    code: str | None = None

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param

    @property
    def retry_after(self) -> int | None:
        """Seconds a client should wait before retrying, when that is known."""
        return None


class SpecError(CloudletError):
    """The spec (cloudlet.yaml, CLOUDLET_* variables, flags) is invalid.

    ``source`` names the file (or "environment"), ``problems`` lists (field, what was expected).
    """

    def __init__(self, source: str, problems: list[tuple[str, str]]) -> None:
        lines = "\n".join(f"  {field}: {why}" for field, why in problems)
        super().__init__(f"invalid spec in {source}:\n{lines}")
        self.source = source
        self.problems = problems


class InvalidRequest(CloudletError):
    status = 400
    type = "invalid_request_error"


class ContextLengthExceeded(InvalidRequest):
    code = "context_length_exceeded"


class PayloadTooLarge(InvalidRequest):
    status = 413
    code = "payload_too_large"


class ModelNotFound(CloudletError):
    status = 404
    type = "invalid_request_error"
    code = "model_not_found"

    def __init__(self, model: str) -> None:
        super().__init__(
            f"The model `{model}` does not exist. GET /v1/models lists the models served here.",
            param="model",
        )


class WrongModelKind(InvalidRequest):
    code = "model_not_supported"


class EngineError(CloudletError):
    """The engine failed while serving a request."""


class _RetryableEngineError(EngineError):
    status = 503

    def __init__(self, message: str, *, retry_after: int = 1) -> None:
        super().__init__(message)
        self._retry_after = max(1, retry_after)

    @property
    def retry_after(self) -> int | None:
        return self._retry_after


class EngineOverloaded(_RetryableEngineError):
    code = "engine_overloaded"


class EngineUnavailable(_RetryableEngineError):
    code = "engine_unavailable"
