"""MigrationBox lab."""
