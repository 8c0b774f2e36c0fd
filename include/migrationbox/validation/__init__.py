"""Post-migration evidence: great-expectations suites per server and database."""
