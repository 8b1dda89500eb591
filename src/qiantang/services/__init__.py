"""Qiantang services package."""
