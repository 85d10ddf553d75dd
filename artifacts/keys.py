"""Content keys: one sha256 over everything that shapes an artifact's bytes, and nothing else."""

from __future__ import annotations

import hashlib
import json
import sys
import unicodedata
from collections.abc import Iterable, Mapping
from functools import cache
from importlib import metadata
from typing import Any

from pydantic import BaseModel


def canonical(value: Any) -> Any:
    """Plain JSON data with a single spelling: models dumped, tuples as lists."""
    if isinstance(value, BaseModel):
        return canonical(value.model_dump(mode="json"))
    if isinstance(value, Mapping):
        return {str(k): canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        # 10000 and 10000.0 are the same parameter.
        return int(value)
    return value


def canonical_json(value: Any) -> str:
    return json.dumps(canonical(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def keyed_params(params: BaseModel | None) -> dict[str, Any]:
    """The parameters that can change the output: fields marked `keyed: False` (how often to checkpoint)
    are left out, so changing them finds the same artifact; fields marked `keyed_unless: VALUE` are left out
    while they hold that value, the one that does what the code did before they existed (so adding a setting
    does not re-key the runs that do not use it)."""
    if params is None:
        return {}
    unkeyed = set()
    for name, field in type(params).model_fields.items():
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        neutral = "keyed_unless" in extra and canonical(getattr(params, name)) == canonical(extra["keyed_unless"])
        if extra.get("keyed") is False or neutral:
            unkeyed.add(name)
    return canonical(params.model_dump(mode="json", exclude=unkeyed))


@cache
def library_version(name: str) -> str:
    """An installed distribution's version, read from its metadata: no import (torch takes a second).

    "absent" for an optional library that is not installed (the CJK font): the output differs without it.
    """
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "absent"


def library_versions(names: Iterable[str]) -> dict[str, str]:
    """Python, its Unicode tables, and the given libraries' versions."""
    return {
        "python": f"{sys.version_info.major}.{sys.version_info.minor}",
        "unicodedata": unicodedata.unidata_version,
        **{name: library_version(name) for name in names},
    }


def content_key(
    stage: str,
    params: Mapping[str, Any],
    inputs: Mapping[str, str],
    code: str,
    libraries: Mapping[str, str],
) -> str:
    payload = {
        "stage": stage,
        "params": dict(params),
        "inputs": dict(inputs),
        "code": code,
        "libraries": dict(libraries),
    }
    return hashlib.sha256(canonical_json(payload).encode("utf-8")).hexdigest()
