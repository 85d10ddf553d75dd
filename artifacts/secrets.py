"""What logs, errors and the UI may show of a URL or a message: passwords, secret query values and the
environment's secrets replaced by `***`. Parsed by hand, never raising: `urllib` splits a password holding an
unencoded `#`, `/` or `?` in the wrong place (and so printed it), and raised on a bad port or IPv6 host.
"""

from __future__ import annotations

import os
import re

HIDDEN = "***"
# Environment variables whose values are secrets wherever they show up.
SECRET_VARIABLES = (
    "PGPASSWORD",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "PREFECT_API_KEY",
    "PREFECT_API_AUTH_STRING",
    "PREFECT_SERVER_API_AUTH_STRING",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_TOKEN",
)
# Query parameters that carry credentials (libpq's password and sslpassword, S3's and others' secrets).
_SECRET_QUERY = re.compile(r"([?&;](?:[^=&#;]*(?:pass|secret|token|auth|credential)[^=&#;]*)=)([^&;]*)", re.IGNORECASE)


def redact(url: str) -> str:
    """A URL with its password and secret query values hidden. The user information runs from `scheme://` to
    the last `@` (a host never holds one; a password may), so whatever a password holds stays hidden."""
    text = _SECRET_QUERY.sub(lambda m: m.group(1) + HIDDEN, url)
    scheme, sep, rest = text.partition("://")
    if sep and "@" in rest:
        userinfo, _, after = rest.rpartition("@")
        user, colon, _ = userinfo.partition(":")
        text = f"{scheme}://{user}{':' + HIDDEN if colon else ''}@{after}"
    return scrub(text)


# A URL's password inside free text (a message quoting a parameter): up to the last '@' before a space or quote.
_URL_PASSWORD = re.compile(r"(://[^\s/:@'\"]*:)[^\s'\"]*@")


def scrub(text: str) -> str:
    """`text` with the password of any URL in it, and every secret the environment holds (SECRET_VARIABLES,
    and the passwords of the URLs in charflow's own settings), replaced."""
    text = _URL_PASSWORD.sub(lambda m: m.group(1) + HIDDEN + "@", text)
    for secret in sorted(_environment_secrets(), key=len, reverse=True):
        text = text.replace(secret, HIDDEN)
    return text


def _environment_secrets() -> set[str]:
    found = {os.environ.get(name, "") for name in SECRET_VARIABLES}
    for name in ("CHARFLOW_CATALOG_URL", "CHARFLOW_STORE_URL", "PREFECT_API_DATABASE_CONNECTION_URL"):
        url = os.environ.get(name, "")
        scheme, sep, rest = url.partition("://")
        if sep and "@" in rest:
            found.add(rest.rpartition("@")[0].partition(":")[2])
    return {secret for secret in found if len(secret) >= 4}  # a short one would hide ordinary words
