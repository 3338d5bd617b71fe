"""Alembic migrations of the ledger; run by :func:`cloudlet.ledger.migrate.upgrade`."""
