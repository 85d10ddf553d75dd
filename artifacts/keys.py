"""Content keys: one sha256 over everything that shapes an artifact's bytes."""

from __future__ import annotations

import hashlib
import json
import sys
import unicodedata
from collections.abc import Mapping
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


def library_versions() -> dict[str, str]:
    """Versions of what shapes the bytes: the writers, the arrays and Unicode tables."""
    import numpy
    import pyarrow

    return {
        "python": f"{sys.version_info.major}.{sys.version_info.minor}",
        "unicodedata": unicodedata.unidata_version,
        "numpy": numpy.__version__,
        "pyarrow": pyarrow.__version__,
    }


def content_key(
    stage: str,
    params: Any,
    inputs: Mapping[str, str],
    code: str,
    libraries: Mapping[str, str] | None = None,
) -> str:
    payload = {
        "stage": stage,
        "params": params,
        "inputs": dict(inputs),
        "code": code,
        "libraries": dict(libraries if libraries is not None else library_versions()),
    }
    return hashlib.sha256(canonical_json(payload).encode("utf-8")).hexdigest()
