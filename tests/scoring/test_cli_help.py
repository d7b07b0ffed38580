"""Every command has help text with an example (house style, after sqlite-utils)."""

from __future__ import annotations

import argparse

import pytest

from scoring.cli.main import build_parser, main


def _commands() -> list[list[str]]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    cmds = [[name] for name in sub.choices]
    cmds.append(["pool", "check"])
    return cmds


@pytest.mark.parametrize("cmd", _commands(), ids=lambda c: " ".join(c))
def test_every_command_has_help_with_an_example(cmd: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([*cmd, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "example:" in out
    assert "image-triage " + cmd[0] in out


def test_top_level_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for name in ("score", "queue", "relabel", "undo", "export", "demo"):
        assert name in out


def test_missing_project_file_is_one_clear_line(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["queue", "--db", str(tmp_path / "nope.triage.db")])
    assert code == 2
    err = capsys.readouterr().err
    assert "nope.triage.db" in err and "Traceback" not in err
