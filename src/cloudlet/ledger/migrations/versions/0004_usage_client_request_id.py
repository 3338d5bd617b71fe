"""usage.client_request_id: the client's own ``x-request-id``, kept beside our unique id.

A client's id is echoed back in ``x-request-id`` and finds the row, but it cannot be the row's
key: clients reuse ids (a retry sends the same one), and the unique ``request_id`` would then
drop the second row.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("usage") as batch:
        batch.add_column(sa.Column("client_request_id", sa.String(64), nullable=True))
        batch.create_index("ix_usage_client_request_id", ["client_request_id"])


def downgrade() -> None:
    with op.batch_alter_table("usage") as batch:
        batch.drop_index("ix_usage_client_request_id")
        batch.drop_column("client_request_id")
