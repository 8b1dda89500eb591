"""Telemetry bus adapters."""
