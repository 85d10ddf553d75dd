"""Passwords never reach a message: every URL form a setting takes, redacted by parsing that never raises."""

from __future__ import annotations

import string

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from artifacts.secrets import HIDDEN, redact, scrub
from charflow.cli import main

# Any printable character but whitespace; in a query value '&', ';' and '#' end the value for every parser
# (libpq's too), so there a password holding one must be percent-encoded anyway.
PASSWORDS = st.text(alphabet=string.printable.strip(), min_size=8, max_size=24)
QUERY_PASSWORDS = st.text(alphabet=[c for c in string.printable.strip() if c not in "&;#"], min_size=8, max_size=24)
FORMS = [
    "postgresql://charflow:{pw}@127.0.0.1:5432/charflow",
    "postgresql://charflow:{pw}@127.0.0.1:port/charflow",  # a port that is no number
    "postgresql://charflow:{pw}@[::1:5432/charflow",  # a torn IPv6 host
    "postgresql://charflow:{pw}@[::1]:5432/charflow?sslmode=require",
    "postgresql+asyncpg://prefect:{pw}@db.example:5432/prefect",
    "s3://ACCESSKEY:{pw}@bucket/prefix",
]
QUERY_FORMS = [
    "postgresql://charflow@127.0.0.1/charflow?password={pw}",
    "postgresql://charflow@127.0.0.1/charflow?sslmode=require&sslpassword={pw}&application_name=x",
    "s3://bucket/prefix?aws_secret_access_key={pw}",
]


@settings(max_examples=60, deadline=None)
@given(password=PASSWORDS, form=st.sampled_from(FORMS))
def test_no_password_survives_redaction_whatever_it_holds(password, form):
    assume(password not in form.replace("{pw}", ""))
    shown = redact(form.format(pw=password))
    assert password not in shown
    assert HIDDEN in shown


@settings(max_examples=40, deadline=None)
@given(password=QUERY_PASSWORDS, form=st.sampled_from(QUERY_FORMS))
def test_no_password_in_a_query_survives_redaction(password, form):
    assume(password not in form.replace("{pw}", ""))
    assert password not in redact(form.format(pw=password))


def test_what_is_not_secret_is_kept():
    assert (
        redact("postgresql://charflow:pw@127.0.0.1:5432/charflow")
        == "postgresql://charflow:***@127.0.0.1:5432/charflow"
    )
    assert redact("postgresql://charflow@127.0.0.1:5432/charflow") == "postgresql://charflow@127.0.0.1:5432/charflow"
    assert redact("s3://bucket/prefix?region=eu") == "s3://bucket/prefix?region=eu"
    assert redact("file:///shared/store") == "file:///shared/store"


def test_the_environments_secrets_are_scrubbed_from_any_message(monkeypatch):
    monkeypatch.setenv("PGPASSWORD", "s3cr3t-pg")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws/Secret+Key")
    monkeypatch.setenv("PREFECT_API_AUTH_STRING", "admin:pass-word")
    text = "driver said: password s3cr3t-pg, key aws/Secret+Key, auth admin:pass-word"
    assert scrub(text) == f"driver said: password {HIDDEN}, key {HIDDEN}, auth {HIDDEN}"


@pytest.mark.parametrize("password", ["p#a/s?s@w:rd", "pa ss%23word", "a@b@c/d?e#f"])
def test_an_unreachable_catalog_is_named_without_its_password(tmp_path, monkeypatch, capsys, password):
    """Was: a password with an unencoded '#', '/' or '?' was printed whole in "cannot reach the catalog
    database ..."; a bad port made the redaction itself raise."""
    monkeypatch.setenv("CHARFLOW_HOME", str(tmp_path / "home"))
    (tmp_path / "shared").mkdir()
    monkeypatch.setenv("CHARFLOW_STORE_URL", f"file://{tmp_path}/shared")
    monkeypatch.setenv("CHARFLOW_CATALOG_URL", f"postgresql://charflow:{password}@127.0.0.1:9/charflow")
    from artifacts import settings as charflow_settings

    charflow_settings.reset()
    try:
        code = main(["inspect", "ls"])
    finally:
        monkeypatch.undo()
        charflow_settings.reset()
    out, err = capsys.readouterr()
    assert code != 0
    assert "CHARFLOW_CATALOG_URL" in err
    assert len(err.strip().splitlines()) == 1, err
    assert password not in out + err


def test_a_source_url_with_a_password_is_refused_without_showing_it(tmp_path, monkeypatch, capsys):
    """Prefect keeps a run's parameters before charflow's code runs: credentials never travel as one."""
    monkeypatch.setenv("CHARFLOW_HOME", str(tmp_path / "home"))
    assert main(["prepare", "https://reader:s3cret-pw@example.org/c.txt"]) == 2
    err = capsys.readouterr().err
    assert "a source URL may not carry a password" in err
    assert "s3cret-pw" not in err
    assert "reader:***@example.org" in err
    assert not (tmp_path / "home").exists()
