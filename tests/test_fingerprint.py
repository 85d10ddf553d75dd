import sys
import textwrap

import pytest

from artifacts.fingerprint import code_fingerprint, module_closure, normalized_source
from tasks.stages import STAGE_CODE

SOURCE = '''
"""A stage."""
import math


def f(x):
    """Double it."""
    return 2 * x  # twice
'''


def test_comments_docstrings_and_formatting_do_not_count():
    reformatted = textwrap.dedent(
        """
        import math
        # a new comment
        def f( x ):
            return 2*x
        """
    )
    assert normalized_source(SOURCE) == normalized_source(reformatted)


def test_a_code_change_counts():
    assert normalized_source(SOURCE) != normalized_source(SOURCE.replace("2 * x", "3 * x"))


@pytest.fixture
def package(tmp_path, monkeypatch):
    root = tmp_path / "pkgfp"
    root.mkdir()
    (root / "__init__.py").write_text("")
    (root / "stage.py").write_text("from pkgfp import helper\n\ndef run(x):\n    return helper.h(x)\n")
    (root / "helper.py").write_text("def h(x):\n    return x + 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield root
    for name in [m for m in sys.modules if m.startswith("pkgfp")]:
        del sys.modules[name]


def fingerprint(root):
    code_fingerprint.cache_clear()
    return code_fingerprint(("pkgfp.stage",), frozenset({"pkgfp"}))


def test_imported_project_modules_are_part_of_the_fingerprint(package):
    assert set(module_closure(["pkgfp.stage"], frozenset({"pkgfp"}))) == {"pkgfp", "pkgfp.stage", "pkgfp.helper"}
    before = fingerprint(package)
    (package / "helper.py").write_text("def h(x):\n    # comment only\n    return x + 1\n")
    assert fingerprint(package) == before
    (package / "helper.py").write_text("def h(x):\n    return x + 2\n")
    assert fingerprint(package) != before


def test_one_function_of_a_module_counts_alone(package):
    (package / "glue.py").write_text("def a():\n    return 1\n\n\ndef b():\n    return 2\n")
    code_fingerprint.cache_clear()
    before = code_fingerprint(("pkgfp.glue:a",), frozenset({"pkgfp"}))
    (package / "glue.py").write_text("def a():\n    return 1  # same\n\n\ndef b():\n    return 3\n")
    code_fingerprint.cache_clear()
    assert code_fingerprint(("pkgfp.glue:a",), frozenset({"pkgfp"})) == before
    (package / "glue.py").write_text("def a():\n    return 4\n\n\ndef b():\n    return 3\n")
    code_fingerprint.cache_clear()
    assert code_fingerprint(("pkgfp.glue:a",), frozenset({"pkgfp"})) != before


def test_stage_fingerprints_cover_their_modules():
    closure = module_closure([m for m in STAGE_CODE["encode"] if ":" not in m])
    assert {"tasks.encode", "tasks.vocab", "artifacts.schemas"} <= set(closure)
    assert not any(name.startswith("prefect") for name in closure)
