"""`embedlog schemas ...` and `embedlog registry serve`: the schema registry from the shell
(embedlog/registry/)."""
from __future__ import annotations

import click


@click.group()
def schemas():
    """Register, look up and check schemas (the _schemas topic)."""


@click.group()
def registry():
    """Serve the schema registry over Confluent's REST API."""
