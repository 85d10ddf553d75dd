"""The API a command uses: a set PREFECT_API_URL must answer; otherwise a temporary server of its own."""

import pytest

from charflow.serve import ServeError
from charflow.temporary_server import check_reachable
from tests.helpers import free_port


def test_a_closed_port_is_one_clear_line(prefect_server):
    check_reachable(prefect_server)
    url = f"http://127.0.0.1:{free_port()}/api"
    with pytest.raises(ServeError, match=f"cannot reach the Prefect server at PREFECT_API_URL={url} .*unset"):
        check_reachable(url)
