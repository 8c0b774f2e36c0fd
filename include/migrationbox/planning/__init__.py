"""Dependency graph, criticality, move groups, waves and the plan document."""
