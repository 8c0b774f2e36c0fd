"""MigrationBox sizing: catalogs with dated prices, three options per server, TCO, models.

``options`` is the entry point (``SizingEngine``, ``size_estate``, ``planning_sizing``);
``clouds`` holds the AWS/Azure/GCP catalogs and their provenance. Submodules load their
data lazily, so importing this package stays cheap for DAG parsing.
"""
