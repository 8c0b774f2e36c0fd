"""Store schema revisions (a package so that wheels ship them; Alembic skips this file)."""
