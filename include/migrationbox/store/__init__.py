"""MigrationBox store: the database of estates, plans, runs, approvals and the ledgers.

- ``models``: SQLAlchemy 2 ORM schema (the source of truth for migrations);
- ``db``: engines, ``session_scope``, Alembic ``upgrade`` (automatic on first use);
- ``repository``: the functions everything else calls, returning ``records`` dataclasses
  or pydantic models, never ORM rows;
- ``testing``: throwaway SQLite/PostgreSQL stores and a tiny estate and plan for tests.

Submodules are imported explicitly (``from migrationbox.store import repository``) so that
importing the package stays cheap for DAG parsing.
"""
