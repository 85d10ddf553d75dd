"""The command line's fixtures."""

import pytest

from charflow.cli import main


@pytest.fixture
def cli(capsys):
    """`charflow ARGS` in this process: (exit code, stdout, stderr); argparse's exits included."""

    def run(*args):
        try:
            code = main([str(a) for a in args])
        except SystemExit as exit:  # argparse
            code = exit.code
        out, err = capsys.readouterr()
        return code, out, err

    return run
