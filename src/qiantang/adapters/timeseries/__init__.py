"""Qiantang adapters/timeseries package."""
