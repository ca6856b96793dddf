"""`python -m tunewright` runs the CLI."""

from tunewright.cli.main import entry

entry()
