"""llama.cpp runs in a child process: a native crash there is a failed check with a message, not a dead tunewright.
A stand-in `llama_cpp` package on the child's path (laid out as llama-cpp-python is) crashes the way a bad build
does (SIGSEGV), always or only with its repacked kernels, or answers."""

import textwrap

import pytest

from tunewright.core.errors import CheckFailed
from tunewright.runtimes.llamacpp import Job, read_gguf

PARAMS = """
class Params:
    use_extra_bufts = True


def llama_model_default_params():
    return Params()
"""

LLAMA = """
import os
import signal

import llama_cpp.llama_cpp as llama_cpp

CRASH = "{crash}"  # always | repacked | never


class Llama:
    def __init__(self, **kwargs):
        repacked = llama_cpp.llama_model_default_params().use_extra_bufts
        if CRASH == "always" or (CRASH == "repacked" and repacked):
            print("loading", kwargs["model_path"], flush=True)
            os.kill(os.getpid(), signal.SIGSEGV)
        self.scores = [[0.0, 1.0, 0.0]] * 8  # always ranks token 1 first

    def tokenize(self, text, add_bos, special):
        return [2] * len(text.decode())

    def reset(self):
        pass

    def create_completion(self, prompt, **kwargs):
        return {{"choices": [{{"text": "ok"}}]}}

    def eval(self, tokens):
        pass

    def close(self):
        pass
"""


@pytest.fixture
def stand_in(tmp_path, monkeypatch):
    def install(crash: str) -> None:
        package = tmp_path / "llama_cpp"
        package.mkdir()
        (package / "__init__.py").write_text("from llama_cpp.llama import Llama\n")
        (package / "llama_cpp.py").write_text(textwrap.dedent(PARAMS))
        (package / "llama.py").write_text(textwrap.dedent(LLAMA.format(crash=crash)))
        monkeypatch.setenv("PYTHONPATH", str(tmp_path))

    return install


JOBS = [Job("ab", [2, 2], [1, 1, 0], 4), Job("x", [5], [1], 4)]


def test_a_crash_of_llama_cpp_is_a_failed_check_naming_the_signal(stand_in, tmp_path):
    stand_in("always")
    with pytest.raises(CheckFailed, match=r"llama.cpp was killed by SIGSEGV while reading m.gguf \(after 0 of 2"):
        read_gguf(tmp_path / "m.gguf", JOBS, threads=1)


def test_answers_tokens_and_agreement_come_back_from_the_child(stand_in, tmp_path):
    stand_in("never")
    seen = []
    reading = read_gguf(tmp_path / "m.gguf", JOBS, 1, seen.append)
    assert seen == [1, 1] and reading.crash is None
    first, second = reading.reads
    assert (first.tokens, first.text, first.hits, first.total) == ([2, 2], "ok", 2, 3)
    assert second.text is None and second.tokens == [2]  # tokenized differently: nothing generated


def test_when_only_the_repacked_kernels_crash_the_plain_ones_read_the_file(stand_in, tmp_path):
    stand_in("repacked")
    reading = read_gguf(tmp_path / "m.gguf", JOBS, 1)
    assert reading.crash == "was killed by SIGSEGV" and reading.reads[0].hits == 2
