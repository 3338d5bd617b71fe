"""The request pipeline, independent of HTTP: resolve the model, validate, call the engine."""

from cloudlet.gateway.service import Gateway

__all__ = ["Gateway"]
