"""The first Ctrl-C or SIGTERM asks for a stop at the next safe point; a second stops at once."""

import os
import signal

import pytest

from flows import interrupt


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_the_first_signal_asks_the_second_stops(sig, capsys):
    interrupt.reset()
    before = signal.getsignal(sig)
    with interrupt.handled():
        os.kill(os.getpid(), sig)
        assert interrupt.requested()
        assert f"charflow: {sig.name}: stopping at the next safe point" in capsys.readouterr().err
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), sig)
    assert signal.getsignal(sig) is before
    assert interrupt.requested()
    interrupt.reset()
    assert not interrupt.requested()
