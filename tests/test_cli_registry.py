"""`movielens-tfx`: every subcommand is one `commands.registry.Command` in `cli.COMMANDS`, and
dispatch (sub-parsers, pass-through argv, exit codes) goes through that list only."""
from __future__ import annotations

import argparse
import re
import sys

import pytest

from commands import cli
from commands.registry import Command
from common.errors import UserError

NAMES = [command.name for command in cli.COMMANDS]
PARSED = [command for command in cli.COMMANDS if not command.pass_through]


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def test_the_parser_s_subcommands_are_the_registry_s_and_run_through_it():
    assert len(set(NAMES)) == len(NAMES)
    assert all(isinstance(command, Command) for command in cli.COMMANDS)
    subparsers = _subparsers(cli.build_parser())
    assert list(subparsers) == [command.name for command in PARSED]  # same names, same order
    for command in PARSED:
        handler = subparsers[command.name].get_default("handler")
        assert handler.__self__ is command and handler.__func__ is Command.run
    assert {c.name for c in cli.COMMANDS if c.pass_through} == {"serve", "rate"}
    # the list in `movielens-tfx --help` (cli's docstring) names every registered command
    listed = re.findall(r"^  (\S+)\s", cli.__doc__, re.M)
    assert sorted(listed) == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_help_of_every_subcommand(name, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main([name, "--help"])
    assert exit_.value.code == 0
    usage = capsys.readouterr().out
    prog = {"serve": "python -m commands.serve", "rate": "python -m serving.client rate"}
    assert usage.startswith(f"usage: {prog.get(name, 'movielens-tfx ' + name)} ")


def test_top_level_help_lists_each_parsed_command_with_its_summary(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--help"])
    assert exit_.value.code == 0
    text = re.sub(r"\s+", " ", capsys.readouterr().out)
    for command in PARSED:
        assert f"{command.name} {command.summary}" in text


@pytest.mark.parametrize("name, module, expected", [
    ("serve", "commands.serve", ["--port=9000", "--rest_api_port=0", "--help-me"]),
    ("rate", "serving.client", ["rate", "--port=9000", "--rest_api_port=0", "--help-me"]),
])
def test_pass_through_commands_get_their_argv_whole(name, module, expected, monkeypatch):
    __import__(module)
    received = []

    def fake_main(argv):
        received.append(argv)
        return 7

    monkeypatch.setattr(sys.modules[module], "main", fake_main)
    assert cli.main([name, "--port=9000", "--rest_api_port=0", "--help-me"]) == 7
    assert received == [expected]


def test_errors_become_exit_codes(monkeypatch, capsys, tmp_path):
    import commands.generate

    def raising(error):
        def run(args):
            raise error
        return run

    monkeypatch.setattr(commands.generate, "run", raising(UserError("no such data")))
    assert cli.main(["generate", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err == "error: no such data\n"
    monkeypatch.setattr(commands.generate, "run", raising(KeyboardInterrupt()))
    assert cli.main(["generate", "--out", str(tmp_path)]) == 130
    assert capsys.readouterr().err == "interrupted\n"
    with pytest.raises(SystemExit) as exit_:
        cli.main(["no-such-command"])
    assert exit_.value.code == 2


def test_generate_writes_the_files_through_the_registered_command(tmp_path):
    assert cli.main(["generate", "--out", str(tmp_path), "--size", "tiny", "--seed", "3"]) == 0
    assert {"users.dat", "movies.dat", "ratings.dat"} <= {p.name for p in tmp_path.iterdir()}
