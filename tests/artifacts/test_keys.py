"""Content keys: every part counts, one spelling per value, unkeyed fields and library versions."""

import json
import subprocess
import sys
from importlib import metadata

from artifacts.keys import canonical_json, content_key, keyed_params, library_versions
from tasks.train.params import TrainParams


def test_content_key_covers_each_part():
    base = dict(stage="clean", params={"max_chars": 10}, inputs={"text": "a"}, code="c", libraries={"numpy": "2"})
    key = content_key(**base)
    variants = [
        {"stage": "vocab"},
        {"params": {"max_chars": 11}},
        {"inputs": {"text": "b"}},
        {"code": "d"},
        {"libraries": {"numpy": "3"}},
    ]
    for change in variants:
        assert content_key(**{**base, **change}) != key, change
    assert content_key(**{**base, "params": {"max_chars": 10.0}}) == key


def test_canonical_json_is_order_free():
    assert canonical_json({"b": 1, "a": (1, 2)}) == json.dumps({"a": [1, 2], "b": 1}, separators=(",", ":"))


def test_a_setting_at_its_neutral_value_is_left_out_of_the_key():
    from pydantic import BaseModel, Field

    class Params(BaseModel):
        lr: float = 1.0
        decay: float = Field(0.0, json_schema_extra={"keyed_unless": 0.0})

    assert keyed_params(Params()) == {"lr": 1}
    assert keyed_params(Params(decay=0)) == {"lr": 1}
    assert keyed_params(Params(decay=0.5)) == {"lr": 1, "decay": 0.5}


def test_how_often_to_checkpoint_is_not_keyed():
    keyed = keyed_params(TrainParams(device="cpu", checkpoint_every=3))
    assert "checkpoint_every" not in keyed
    assert keyed == keyed_params(TrainParams(device="cpu"))
    assert keyed["lr"] == 100
    assert keyed["prefixes"] == ["分开", "不分开"]
    assert keyed_params(None) == {}


def test_library_versions_are_read_without_importing():
    versions = library_versions(["torch", "numpy"])
    assert versions["torch"] == metadata.version("torch")
    assert versions["numpy"] == metadata.version("numpy")
    assert versions["python"] == f"{sys.version_info.major}.{sys.version_info.minor}"
    assert versions["unicodedata"]
    script = "import sys; from artifacts.keys import library_versions as v; v(['torch']); print('torch' in sys.modules)"
    assert (
        subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout == "False\n"
    )
