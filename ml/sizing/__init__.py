"""Sizing and forecasting model pipelines (see ``pipeline``)."""
