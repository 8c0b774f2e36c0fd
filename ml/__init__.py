"""Training and evaluation pipelines that the retraining DAGs call."""
