"""Flat flow parameters taken from the parameter models, so that a deployment takes `--param epochs=20`
and every default is the model's own."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel

F = TypeVar("F", bound=Callable[..., Any])


def flat_fields(*models: type[BaseModel]) -> dict[str, Any]:
    """Each field of the models by name (the first model's where two share one), with its FieldInfo."""
    fields: dict[str, Any] = {}
    for model in models:
        for name, field in model.model_fields.items():
            fields.setdefault(name, field)
    return fields


def flat_parameters(*models: type[BaseModel]) -> Callable[[F], F]:
    """Give `fn(..., **settings)` a keyword parameter per field of `models`, typed and defaulted by the model.

    Prefect reads a flow's parameters (the deployment's schema, the UI's form, validation) from its
    signature, so the generated one is what it sees; `fn` receives the fields as `settings`.
    """

    def decorate(fn: F) -> F:
        hints = typing.get_type_hints(fn)
        own = [
            p.replace(annotation=hints.get(p.name, p.annotation))
            for p in inspect.signature(fn).parameters.values()
            if p.kind is not inspect.Parameter.VAR_KEYWORD
        ]
        generated = [
            inspect.Parameter(
                name,
                inspect.Parameter.KEYWORD_ONLY,
                default=field.get_default(call_default_factory=True),
                annotation=field.annotation,
            )
            for name, field in flat_fields(*models).items()
            if name not in {p.name for p in own}
        ]
        fn.__signature__ = inspect.Signature([*own, *generated], return_annotation=hints.get("return"))  # type: ignore[attr-defined]
        fn.__annotations__ = {**hints, **{p.name: p.annotation for p in generated}}
        return fn

    return decorate


def pick(model: type[BaseModel], settings: dict[str, Any]) -> dict[str, Any]:
    """The settings that are fields of `model`."""
    return {name: value for name, value in settings.items() if name in model.model_fields}
