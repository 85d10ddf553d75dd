"""The one base of every error charflow reports to a user: a message that names the problem and the fix."""

from __future__ import annotations


class CharflowError(Exception):
    """A problem with the input, the parameters or the environment, not a bug: the CLI prints it as one line
    and exits with `exit_code`."""

    exit_code = 1


class ParameterError(CharflowError, ValueError):
    """Parameters that cannot work together or on this machine (exit 2, like a validation error)."""

    exit_code = 2


class Interrupted(CharflowError):
    """Stopped on request (Ctrl-C, SIGTERM) at a safe point; a rerun resumes."""

    exit_code = 130
