"""`python -m qiantang.cli`."""

from qiantang.cli.main import app

app()
