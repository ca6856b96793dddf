import io

import pytest
from rich.console import Console

from tunewright.core import progress


@pytest.fixture
def plain(monkeypatch):
    out = io.StringIO()
    monkeypatch.setattr(progress, "console", Console(file=out, force_terminal=False))
    monkeypatch.setenv("TUNEWRIGHT_PROGRESS_EVERY", "0")
    return out


def test_without_a_terminal_progress_is_plain_lines(plain):
    with progress.progress_bar("training", total=3) as advance:
        for step in range(3):
            advance(1, info=f"loss {1.5 - step:.1f}")
    lines = plain.getvalue().splitlines()
    assert lines[0] == "training: started (3 to do)"
    assert lines[1].startswith("training: 1/3 (33%), 0:00:00 elapsed, about ") and lines[1].endswith("loss 1.5")
    assert lines[-1].startswith("training: 3/3 (100%)") and lines[-1].endswith("(done)")


def test_a_failed_step_says_where_it_stopped(plain):
    with pytest.raises(KeyboardInterrupt), progress.progress_bar("curating", total=None) as advance:
        advance(5)
        raise KeyboardInterrupt
    assert plain.getvalue().splitlines()[-1].startswith("curating: 5, ") and "(stopped)" in plain.getvalue()


def test_status_without_a_terminal_says_start_and_end(plain):
    with progress.status("saving the adapter"):
        pass
    assert plain.getvalue().splitlines() == ["saving the adapter: started", "saving the adapter: done in 0:00:00"]


def test_on_a_terminal_nested_displays_do_not_collide(monkeypatch):
    out = io.StringIO()
    monkeypatch.setattr(progress, "console", Console(file=out, force_terminal=True, width=100))
    with progress.status("exporting"), progress.status("loading the base"):
        pass
    with progress.progress_bar("evaluating", total=2) as advance:
        with progress.progress_bar("inner", total=1) as inner:
            inner(1)
        advance(2)
    assert "evaluating" in out.getvalue() and "inner" not in out.getvalue()
