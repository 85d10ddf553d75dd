import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from artifacts.fingerprint import code_fingerprint, module_closure, normalized_source
from artifacts.stages import STAGES

REPO = Path(__file__).resolve().parents[2]

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


def test_stage_fingerprints_cover_their_code_and_nothing_presentational():
    closure = set(module_closure([m for m in STAGES["encode"].code if ":" not in m]))
    assert {"tasks.encode", "tasks.vocab", "artifacts.indices", "artifacts.text", "artifacts.vocab"} <= closure
    train = set(module_closure([m for m in STAGES["train"].code if ":" not in m]))
    assert {"tasks.train.loop", "tasks.train.model", "tasks.train.checkpoint", "artifacts.batch_reader"} <= train
    assert {"artifacts.model", "artifacts.charts"} <= train  # the curve is a file of the model artifact
    assert {"tasks.train.job", "artifacts.train_run", "flows.ddp", "flows.ddp_rank"} <= train  # torchrun's path
    for stage in STAGES.values():
        closure = module_closure([m for m in stage.code if ":" not in m])
        shown = [m for m in closure if m.startswith(("flows", "charflow", "artifacts.views", "artifacts.inspect"))]
        # Of flows, only the multi-process training: its launcher and the program each rank runs.
        assert [m for m in shown if m not in ("flows.ddp", "flows.ddp_rank")] == [], (stage.name, shown)


PRINT_TRAIN_FINGERPRINT = "import artifacts.stages as s; print(s.__file__); print(s.STAGES['train'].fingerprint)"


def train_fingerprint(root: Path) -> str:
    out = subprocess.run(
        [sys.executable, "-c", PRINT_TRAIN_FINGERPRINT], cwd=root, capture_output=True, text=True, check=True
    ).stdout.split()
    assert Path(out[0]).is_relative_to(root)  # the copy's modules, not the checkout's
    return out[1]


@pytest.fixture
def copy(tmp_path):
    for package in ("tasks", "artifacts", "flows", "charflow"):
        shutil.copytree(REPO / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def rewrite(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} is no longer in {path}"
    path.write_text(text.replace(old, new), encoding="utf-8")


def test_rewording_progress_keeps_the_train_key_and_changing_the_loss_changes_it(copy):
    before = train_fingerprint(copy)
    assert before == STAGES["train"].fingerprint
    rewrite(copy / "flows" / "progress.py", 'f"epoch {event.epoch}: perplexity', 'f"after epoch {event.epoch}, ppl')
    rewrite(copy / "flows" / "progress.py", '"writing batch shards"', '"shards written"')
    assert train_fingerprint(copy) == before
    rewrite(
        copy / "tasks" / "train" / "step.py",
        "loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))",
        "loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), label_smoothing=0.1)",
    )
    assert train_fingerprint(copy) != before


def test_a_fingerprint_is_remembered_in_the_home_until_a_file_it_read_changes(tmp_path, monkeypatch):
    import json

    monkeypatch.setenv("CHARFLOW_HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    package = tmp_path / "src" / "pkgmem"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "stage.py").write_text("def f():\n    return 1\n")
    monkeypatch.syspath_prepend(str(tmp_path / "src"))
    code_fingerprint.cache_clear()
    first = code_fingerprint(("pkgmem.stage",), frozenset({"pkgmem"}))
    remembered = json.loads((tmp_path / "home" / "code-fingerprints.json").read_text())
    assert [entry["fingerprint"] for entry in remembered.values()] == [first]
    assert [Path(f[0]).name for entry in remembered.values() for f in entry["files"]] == ["stage.py"]
    (package / "stage.py").write_text("def f():\n    return 2\n")
    code_fingerprint.cache_clear()
    assert code_fingerprint(("pkgmem.stage",), frozenset({"pkgmem"})) != first
    (package / "stage.py").write_text("def f():\n    return 1\n")
    code_fingerprint.cache_clear()
    assert code_fingerprint(("pkgmem.stage",), frozenset({"pkgmem"})) == first


def test_two_checkouts_sharing_a_home_do_not_answer_for_each_other(tmp_path, monkeypatch):
    monkeypatch.setenv("CHARFLOW_HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    prints = []
    for checkout, returns in (("one", 1), ("two", 2)):
        package = tmp_path / checkout / "pkgtwo"
        package.mkdir(parents=True)
        (package / "__init__.py").write_text("")
        (package / "stage.py").write_text(f"def f():\n    return {returns}\n")
        monkeypatch.syspath_prepend(str(tmp_path / checkout))
        for name in [m for m in sys.modules if m.startswith("pkgtwo")]:
            del sys.modules[name]
        code_fingerprint.cache_clear()
        prints.append(code_fingerprint(("pkgtwo.stage",), frozenset({"pkgtwo"})))
    # The second checkout's code differs, so must its fingerprint, though the first one's files are unchanged.
    assert prints[0] != prints[1]
    for name in [m for m in sys.modules if m.startswith("pkgtwo")]:
        del sys.modules[name]
