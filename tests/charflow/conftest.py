"""The command line's fixtures."""

from pathlib import Path

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


@pytest.fixture
def cli_on(cli):
    """`charflow ARGS` in this process on CHARFLOW_HOME `home`, recorded on the Prefect server `api_url`: what
    `tests.helpers.run_cli` gives a command process, for tests whose process boundary is not what they test
    (a command's own process is 2 to 5 CPU seconds of imports and Prefect start-up)."""

    def run(home: Path, api_url: str, *args):
        from prefect.settings import PREFECT_API_URL, temporary_settings

        home.mkdir(parents=True, exist_ok=True)
        with temporary_settings({PREFECT_API_URL: api_url}), pytest.MonkeyPatch.context() as patch:
            patch.setenv("CHARFLOW_HOME", str(home))
            return cli(*args)

    return run
