"""Qiantang (钱塘): an open 1+N industrial internet platform system."""

__version__ = "0.1.0"
__all__ = ["__version__"]
