"""`embedlog connect ...`: connectors run in the library (embedlog/connect/)."""
from __future__ import annotations

import click


@click.group()
def connect():
    """Run and manage connectors (Kafka Connect-shaped configs)."""
