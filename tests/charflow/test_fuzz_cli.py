"""The command line under fuzzing, in this process: every option of every command given a bad value (negative,
zero, huge, NaN/inf, empty, control characters, unknown choices, malformed references) gives one line and a
non-zero exit, never a traceback, before any server starts, and leaves the store and catalog as they were.

The positional arguments name what does not exist (a missing file, an unknown corpus): a value the option
happens to accept still ends in a refusal, never in work."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from charflow import cli, home_server
from tests.helpers import snapshot

# They start or stop servers, for good: real processes test them (tests/charflow/test_home_server.py).
SKIPPED_COMMANDS = {"serve", "server"}
# A stored batches artifact is resolved by the train flow (a Prefect run), not before it.
SKIPPED_OPTIONS = {"--batches"}
BAD_VALUES = [
    "-1",
    "0",
    "-0.5",
    "nan",
    "inf",
    "-inf",
    "1e400",
    "",
    " ",
    "\x00",
    "\x1b[2J",
    "zz-unknown",
    "a/b@1",
    "@",
    "9" * 400,
    "<img src=x onerror=alert(1)>",
    "nosuch@v9/train",
    "https://reader:pw@example.org/x.txt",
]


def leaves(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    """(command path, its parser) of every command that runs something."""
    subparsers = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subparsers:
        return [(path, parser)]
    return [leaf for name, sub in subparsers[0].choices.items() for leaf in leaves(sub, (*path, name))]


COMMANDS = [(path, parser) for path, parser in leaves(cli.build_parser()) if path[0] not in SKIPPED_COMMANDS]


def value_options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [
        a
        for a in parser._actions
        if a.option_strings and a.nargs != 0 and not set(a.option_strings) & (SKIPPED_OPTIONS | {"-h", "--help"})
    ]


def positionals(parser: argparse.ArgumentParser, missing: Path) -> list[str]:
    """Arguments that name nothing: a missing file where a source or text goes, an unknown corpus elsewhere."""
    given = []
    for action in parser._actions:
        if action.option_strings or isinstance(action, argparse._SubParsersAction):
            continue
        given.append(str(missing) if action.dest in ("source", "sources", "text") else "nosuch@v9/train")
    return given


OPTIONS = [(path, parser, option) for path, parser in COMMANDS for option in value_options(parser)]


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A home with a store and a catalog to compare; no server may start."""
    folder = tmp_path / "home"
    (folder / "store").mkdir(parents=True)
    (folder / "store" / "catalog.jsonl").write_text("")
    monkeypatch.setenv("CHARFLOW_HOME", str(folder))
    monkeypatch.delenv("PREFECT_API_URL", raising=False)

    def no_server(*args, **kwargs):
        raise AssertionError("a server was started for a refused command")

    monkeypatch.setattr(home_server, "_start", no_server)
    return folder


def test_every_command_has_options_to_fuzz():
    fuzzed = {path for path, _, _ in OPTIONS}
    assert {("prepare",), ("run",), ("generate",), ("evaluate",), ("inspect", "gc"), ("promote",)} <= fuzzed


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=st.sampled_from(OPTIONS), value=st.sampled_from(BAD_VALUES), data=st.data())
def test_bad_option_values_are_one_line_before_any_work(home, capsys, case, value, data):
    path, parser, option = case
    values = [value] * (option.nargs if isinstance(option.nargs, int) else 1)
    if option.choices:
        values = [data.draw(st.sampled_from([value, *map(str, option.choices)]))] * len(values)
    argv = [*path, *positionals(parser, home / "missing.txt"), option.option_strings[-1], *values]
    before = snapshot(home / "store")
    try:
        code = cli.main(argv)
    except SystemExit as exit:  # argparse's refusal of a malformed value
        code = exit.code
    out, err = capsys.readouterr()
    assert snapshot(home / "store") == before, argv
    if code == 0:  # a value the option takes, on a command that only reads (an empty listing, say)
        return
    assert code in (1, 2), (argv, code, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, (argv, err)
    assert lines[0].startswith("charflow"), (argv, err)
    assert "Traceback" not in out + err
    assert all(ch.isprintable() for ch in lines[0]), (argv, err)  # an escape sequence would act on the terminal
