"""Codecs: wire formats <-> domain messages. Pure functions, no I/O."""
