"""MigrationBox phases."""
