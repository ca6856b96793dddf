from curate_helpers import run_steps

from tunewright.core.records import to_conversation
from tunewright.curate.clean import Clean, clean_text, strip_html
from tunewright.curate.pipeline import Quarantine


def test_unicode_control_and_whitespace_fixes():
    text, fixes = clean_text("It\u00e2\u20ac\u2122s  done\x07 now\u200b.\u00a0Next\n\n\n\nline   \n")
    assert text == "It's done now. Next\n\nline"
    assert fixes == ["unicode", "whitespace"]  # ftfy also drops the control character
    assert clean_text("bell\x07", fix_unicode=False) == ("bell", ["control_chars"])


def test_indentation_is_kept():
    code = "def f():\n    return 1\n\tpass"
    assert clean_text(code) == (code, [])


def test_html_strip_is_optional():
    html = "<p>Check the <b>monitor</b> &amp; logs</p><script>x()</script>"
    assert clean_text(html)[0] == html.strip()
    assert clean_text(html, html_strip=True) == ("Check the monitor & logs", ["html", "whitespace"])
    assert strip_html("plain text") == "plain text"


def test_modified_records_continue_and_are_logged():
    rec = to_conversation({"prompt": "a  b", "response": "ok"}, "s", "r1")
    q = Quarantine()
    kept = run_steps([rec], [Clean()], q)
    assert kept[0].messages[0].content == "a b"
    assert q.entries["clean"][0]["action"] == "modified"
    assert q.count() == 0 and q.count("modified") == 1
