"""Qiantang cli package."""
