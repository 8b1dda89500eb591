"""Qiantang api package."""
