"""Stored Responses API answers (``store: true``), read back for ``previous_response_id``.

A stored answer belongs to the key that made it: another key cannot read it (it looks
unknown), and in open mode or with the admin key (``key_id`` None) the team must match.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from cloudlet.ledger.keys import Tenant
from cloudlet.ledger.tables import responses


@dataclass(frozen=True, slots=True)
class StoredResponse:
    id: str
    model: str
    conversation: list[dict[str, Any]]  # chat messages, the answer's included
    response: dict[str, Any]  # the response object as it was sent


class ResponseStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def save(
        self,
        tenant: Tenant,
        response_id: str,
        model: str,
        conversation: list[dict[str, Any]],
        response: dict[str, Any],
    ) -> None:
        row = {
            "id": response_id,
            "created_at": datetime.now(UTC),
            "key_id": tenant.key_id,
            "team": tenant.team,
            "model": model,
            "conversation": conversation,
            "response": response,
        }
        async with self._engine.begin() as conn:
            await conn.execute(insert(responses).values(**row))

    async def load(self, tenant: Tenant, response_id: str) -> StoredResponse | None:
        query = select(responses).where(responses.c.id == response_id)
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).mappings().first()
        if row is None or row["key_id"] != tenant.key_id or row["team"] != tenant.team:
            return None
        return StoredResponse(row["id"], row["model"], row["conversation"], row["response"])
