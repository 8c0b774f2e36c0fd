"""MigrationBox cloud."""
