"""MigrationBox sizing."""
