"""llama.cpp runs in a child process: a native crash there is a failed check with a message, not a dead tunewright.
A stand-in `llama_cpp` package on the child's path crashes the way a bad build does (SIGSEGV), or answers."""

import textwrap

import pytest

from tunewright.core.errors import CheckFailed
from tunewright.runtimes.llamacpp import Job, read_gguf

CRASHING = """
import os, signal

class Llama:
    def __init__(self, **kwargs):
        print("loading", kwargs["model_path"], flush=True)
        os.kill(os.getpid(), signal.SIGSEGV)
"""

ANSWERING = """
class Llama:
    def __init__(self, **kwargs):
        self.scores = [[0.0, 1.0, 0.0]] * 8  # always ranks token 1 first

    def tokenize(self, text, add_bos, special):
        return [2] * len(text.decode())

    def reset(self):
        pass

    def create_completion(self, prompt, **kwargs):
        return {"choices": [{"text": "ok"}]}

    def eval(self, tokens):
        pass

    def close(self):
        pass
"""


@pytest.fixture
def stand_in(tmp_path, monkeypatch):
    def install(source: str) -> None:
        (tmp_path / "llama_cpp").mkdir()
        (tmp_path / "llama_cpp" / "__init__.py").write_text(textwrap.dedent(source))
        monkeypatch.setenv("PYTHONPATH", str(tmp_path))

    return install


def test_a_crash_of_llama_cpp_is_a_failed_check_naming_the_signal(stand_in, tmp_path):
    stand_in(CRASHING)
    with pytest.raises(CheckFailed, match=r"llama.cpp was killed by SIGSEGV while reading m.gguf \(after 0 of 1"):
        read_gguf(tmp_path / "m.gguf", [Job("ab", [2, 2], [1, 0], 4)], threads=1)


def test_answers_tokens_and_agreement_come_back_from_the_child(stand_in, tmp_path):
    stand_in(ANSWERING)
    seen = []
    reads = read_gguf(tmp_path / "m.gguf", [Job("ab", [2, 2], [1, 1, 0], 4), Job("x", [5], [1], 4)], 1, seen.append)
    assert seen == [1, 1]
    assert (reads[0].tokens, reads[0].text, reads[0].hits, reads[0].total) == ([2, 2], "ok", 2, 3)
    assert reads[1].text is None and reads[1].tokens == [2]  # tokenized differently: nothing generated
