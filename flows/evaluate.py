"""The evaluate flow: a trained model's perplexity and bits per character on a text (a source, cleaned as the
model's corpus was, or a corpus version's clean text), each step a cached task, no corpus version registered.

Its settings are flat parameters generated from `EvaluateParams` (defaults included), so a deployment takes
`--param split=val`; the run's page shows them resolved, and the evaluation as a table.
"""

from __future__ import annotations

from typing import Any

from prefect.artifacts import create_markdown_artifact

from artifacts.manifest import read_manifest
from artifacts.store import ArtifactRef
from flows import pipeline
from flows.compute import ConfiguredTaskRunner
from flows.params import flat_flow
from flows.pipeline import is_corpus_text, pick
from flows.prefect_tasks import PrefectRunner
from flows.run_page import show_parameters
from flows.run_words import corpus_prefix, markdown_table
from flows.run_words import text as escaped
from tasks.evaluate import EvaluateParams

EVALUATION_KEY = "evaluation"


def evaluation_markdown(made: dict[str, ArtifactRef], text: str) -> str:
    """The evaluation as a person reads it: which model on which text, perplexity and bits per character."""
    evaluation = made["evaluate"]
    summary = evaluation.summary
    unknown = summary["unknown_mapped"] + summary["unknown_skipped"]
    how = "as &lt;unk&gt;" if summary["unknown_mapped"] else "skipped"
    row = {
        "model": f"`{made['train'].key[:12]}` ({summary['checkpoint']})",
        "text": f"{escaped(text)} (clean `{made['clean'].key[:12]}`, {summary['split']})",
        "characters": f"{summary['chars']:,}",
        "unknown": f"{unknown:,} {how}" if unknown else "0",
        "perplexity": f"{summary['perplexity']:.4f}",
        "bits per char": f"{summary['bits_per_char']:.4f}",
        "device": summary["device"],
    }
    cached = " (cached)" if evaluation.cache_hit else ""
    return f"## evaluation `{evaluation.key[:12]}`{cached}\n\n{markdown_table([row])}"


@flat_flow("evaluate", EvaluateParams, task_runner=ConfiguredTaskRunner())
def evaluate(model: str, text: str, **settings: Any) -> dict[str, ArtifactRef]:
    """Evaluate a model (a key, key prefix, folder or corpus@version/train) on a text: a file, folder, .zip or
    http(s) URL, or corpus@version (that version's clean text)."""
    params = EvaluateParams(**pick(EvaluateParams, settings))
    runner = PrefectRunner()
    if is_corpus_text(text):  # a source's corpus is named when it is fetched
        runner.corpus = text.partition("@")[0]
    made = pipeline.evaluate(runner, model, text, params)
    resolved = read_manifest(made["evaluate"].path).params  # checkpoint, streams, num_steps, device made concrete
    show_parameters({"model": model, "text": text, **resolved})
    artifact = create_markdown_artifact(
        key=corpus_prefix(runner.corpus) + EVALUATION_KEY,
        markdown=evaluation_markdown(made, text),
        description="perplexity and bits per character",
    )
    runner.published.setdefault("evaluate", []).append((EVALUATION_KEY, artifact))
    runner.finish()
    return made
