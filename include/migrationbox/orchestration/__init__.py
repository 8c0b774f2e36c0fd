"""MigrationBox orchestration."""
