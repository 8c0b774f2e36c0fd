"""MigrationBox iac."""
