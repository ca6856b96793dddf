"""Third-party runtimes tunewright drives from the outside: llama.cpp, vLLM, OpenAI-compatible servers.

Each runs in its own process (a native crash there is a failed check, never a dead
tunewright) and is used by the stages above: serve, export verification and eval.
"""
