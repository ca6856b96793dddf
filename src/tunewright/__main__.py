"""`python -m tunewright` (what `torchrun -m tunewright train ...` runs on every rank)."""

from tunewright.cli.main import entry

entry()
