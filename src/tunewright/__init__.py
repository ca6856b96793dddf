"""tunewright: curate, fine-tune, evaluate, export and serve open LLMs, with a paper trail."""

__version__ = "0.1.0"
