"""Observability: the sinks that every request's record feeds, and the tracer."""
