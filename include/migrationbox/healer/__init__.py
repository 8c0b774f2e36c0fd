"""The autonomous healer: sense, detect, find the cause, decide, remediate, learn, report.

One module per step, each usable (and tested) without a scheduler:

* ``health``    the plan's ``/health/deep`` JSON shape and per-resource health results
* ``detect``    model 1 (causal rolling z-score) + model 2 (Prophet forecast interval)
* ``rca``       breadth-first root-cause search over the dependency graph
* ``decision``  the decision matrix (``decision_matrix.json``) and the decision engine
* ``guard``     per-resource locks and rate limits (in memory or in SQL tables of its own)
* ``learning``  remediation records, per-action Beta confidence, the XGBoost classifier
* ``incident``  incident reports in the plan's template (Markdown, MTTR)
* ``notify``    notifiers: Teams channel webhook (Adaptive Card 1.5), email (SMTP)
* ``tracking``  MLflow tracking URI and the per-metric forecaster round trip
* ``tables``    the healer's own SQL tables (locks, action log, remediation records)

Heavy libraries (pandas, Prophet, XGBoost, MLflow) are imported by the modules that need
them, never here, so importing the package from a DAG file stays cheap.
"""
