"""Headers an upstream attempt carries for its trace, with no tracing library here.

While an upstream attempt starts its request, the tracer (``cloudlet.observe``) sets
:data:`trace_headers` to the attempt's W3C trace context (``traceparent``, and
``tracestate`` when there is one); the remote engine adds them to the request it builds in
that context. Unset (the default, and always with tracing off) nothing is added.
"""

from __future__ import annotations

from contextvars import ContextVar

#: (name, value) pairs for the upstream request being started in this context.
trace_headers: ContextVar[tuple[tuple[str, str], ...]] = ContextVar(
    "cloudlet_trace_headers", default=()
)
