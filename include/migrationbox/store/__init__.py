"""MigrationBox store."""
