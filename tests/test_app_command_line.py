"""The app's and the screenshot tool's command lines (facediag.app, facediag.app.screenshot) refuse what they do
not understand with the usage and the reason, before any model is loaded or any browser started."""

from __future__ import annotations

import pytest

from facediag.app.__main__ import parse
from facediag.app.screenshot import main as screenshot_main
from facediag.app.screenshot import system_chromium


@pytest.mark.parametrize(("argv", "reason"), [
    (["run=a", "colour=blue"], "not understood: 'colour=blue'"),
    (["run=a", "port"], "not understood: 'port'"),
    (["run="], "not understood: 'run='"),
    (["run=a", "port=80a"], "port must be a whole number, got '80a'"),
    (["run=a", "k=-1"], "k must be a whole number, got '-1'"),
    (["run=a", "show_neighbours=yes"], "show_neighbours must be true or false"),
])  # fmt: skip
def test_the_app_command_line_names_what_it_did_not_understand_under_its_usage(argv, reason):
    with pytest.raises(SystemExit) as stopped:
        parse(argv)
    message = str(stopped.value.code)
    assert message.startswith("usage: python -m facediag.app run=<run dir>") and message.endswith(reason)


def test_the_app_command_line_takes_several_runs_and_its_options():
    runs, options = parse(["run=a", "run=b", "port=0", "show_neighbours=TRUE", "threads=1"])
    assert runs == ["a", "b"] and options == {"port": "0", "show_neighbours": "TRUE", "threads": "1"}


def test_the_screenshot_tool_asks_for_url_photo_and_out_and_finds_no_browser_on_an_empty_path(monkeypatch):
    with pytest.raises(SystemExit, match="usage: python -m facediag.app.screenshot url=<page> photo=<image>"):
        screenshot_main(["url=http://127.0.0.1:1/", "photo=a.jpg"])
    monkeypatch.setenv("PATH", "")
    assert system_chromium() is None
