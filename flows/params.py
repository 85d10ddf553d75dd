"""One parameter shape for every flow: flat, typed keyword parameters generated from the parameter models, so
that every deployment takes `--param epochs=20` and every default is the model's own. The nested shape of
earlier releases (`ingest={...}`, `sampler={...}`, `training={...}`) is refused: by `prefect deployment run`
against the deployment's schema, and here, in one line naming the flat parameters, where a run's parameters
reach validation (a removed name given through the API stops earlier, in Prefect's own binding)."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from typing import Any, TypeVar

from prefect import Flow
from prefect.exceptions import ParameterTypeError
from pydantic import BaseModel

F = TypeVar("F", bound=Callable[..., Any])

# The nested parameters of earlier releases: a model's fields under one name.
NESTED = ("ingest", "clean", "vocab", "sampler", "training")


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
        fn.__doc__ = (fn.__doc__ or "") + _described(models)
        return fn

    return decorate


def _described(models: tuple[type[BaseModel], ...]) -> str:
    """Prefect's schema takes each parameter's description from the docstring's Args section."""
    lines = [f"    {name}: {field.description}" for name, field in flat_fields(*models).items() if field.description]
    return "\n\nArgs:\n" + "\n".join(lines) if lines else ""


def nested_given(parameters: dict[str, Any], accepted: typing.Collection[str]) -> list[str]:
    """The parameters given in the nested shape: a name the flow no longer takes, or `sampler` as a mapping."""
    return [
        name
        for name in NESTED
        if name in parameters and (name not in accepted or isinstance(parameters[name], dict | BaseModel))
    ]


class FlatFlow(Flow):
    """A flow whose parameter validation refuses the nested shape in one line naming the flat parameters."""

    def validate_parameters(self, parameters: dict[str, Any]) -> dict[str, Any]:
        accepted = inspect.signature(self.fn).parameters
        if nested := nested_given(parameters, accepted):
            raise ParameterTypeError(
                f"the nested parameter{'s' if len(nested) > 1 else ''} {', '.join(nested)} of earlier releases "
                f"{'are' if len(nested) > 1 else 'is'} now flat: give each setting by its own name (--param "
                f"epochs=20); {self.name} takes {', '.join(accepted)}"
            )
        return super().validate_parameters(parameters)


def flat_flow(name: str, *models: type[BaseModel], **options: Any) -> Callable[[Callable[..., Any]], FlatFlow]:
    """`@flow(name=...)` with flat parameters from `models` and the nested shape refused."""

    def decorate(fn: Callable[..., Any]) -> FlatFlow:
        return FlatFlow(flat_parameters(*models)(fn), name=name, **options)

    return decorate
