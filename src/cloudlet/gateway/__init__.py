"""The request pipeline, independent of HTTP: resolve the model or route, pick a target,
fail over, meter; see :mod:`cloudlet.gateway.service`."""

from cloudlet.gateway.budget import BudgetStore, InMemoryBudgetStore
from cloudlet.gateway.service import Embedding, Gateway, Generation

__all__ = ["BudgetStore", "Embedding", "Gateway", "Generation", "InMemoryBudgetStore"]
