"""Qiantang adapters package."""
