"""Tenants, API keys and the usage ledger, in SQLite (default) or PostgreSQL.

Deliberately empty, so that importing a part does not load the rest. The public API, by
module:

* :mod:`cloudlet.ledger.store` — :class:`Ledger` (open, migrate, close);
* :mod:`cloudlet.ledger.keys` — :class:`KeyStore`, :class:`Tenant`, :class:`KeyRecord`;
* :mod:`cloudlet.ledger.writer` — :class:`LedgerWriter`, :class:`UsageRow`;
* :mod:`cloudlet.ledger.reports` — usage reports, CSV export, ``parse_since``;
* :mod:`cloudlet.config.storage` — the spec's ``storage:`` and ``cost:`` blocks.

Core package: never imports the web framework or llama.cpp.
"""
