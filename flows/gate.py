"""The quality gate in a flow: after a new version's model is trained, the text both models are compared on is
found (the version's validation tail, or --eval-source ingested and cleaned as the new model's corpus, as
cached stages), the decision is made as a task (`artifacts.decisions.decide`) and shown as a markdown artifact
under the corpus's keys."""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from artifacts import decisions
from artifacts.backends import open_catalog, open_store
from artifacts.batches import BatchesSummary
from artifacts.decisions import Compared, Decided, Decision
from artifacts.store import ArtifactRef
from artifacts.text import TextSummary
from flows import cluster, compute, home
from flows.pipeline import Prepared, SourceText, plan_evaluation
from flows.prefect_tasks import PrefectRunner
from flows.publish import VISIBLE, visible
from flows.run_words import code, corpus_prefix, markdown_table, text
from tasks.evaluate import EvaluateParams, evaluated_range
from tasks.gate import GateParams

DECISION_KEY = "gate-decision"


@task(name="decided", cache_policy=NO_CACHE)
def decided_task(corpus: str, version: int, alias: str) -> bool:
    """The version is decided for the alias already."""
    cluster.check_worker()
    return decisions.decided(open_catalog(home.store_root()).entries(), corpus, version, alias) is not None


@task(name="decide", task_run_name="decide {corpus} v{version}", cache_policy=NO_CACHE)
def decide_task(
    corpus: str, version: int, model: ArtifactRef, compared: Compared, gate: GateParams, prefix: str, seed: int
) -> Decided:
    cluster.check_worker()
    store = open_store(home.store_root())
    here = Compared(store.local(compared.text), compared.start, compared.end, compared.described)
    made = decisions.decide(
        store, open_catalog(home.store_root()), corpus, version, store.local(model), here, gate, prefix, seed
    )
    get_run_logger().info(made.decision.message)
    return made


def compared_text(made: Prepared, gate: GateParams) -> Compared:
    """The text the models are compared on: --eval-source, ingested and cleaned as the new model's corpus (cached
    stages, no corpus version registered), or the new version's validation tail as its batches cut it."""
    model = made.stages["train"]
    if gate.eval_source is not None:
        runner = PrefectRunner(names_run=False)
        plan = plan_evaluation(runner.find, model.key, gate.eval_source, EvaluateParams())
        assert isinstance(plan.text, SourceText)  # a source: eval_source is never a corpus version here
        fetched = runner.fetch(plan.text.located, plan.text.ingest.patterns)
        ingested = runner.stage("ingest", plan.text.ingest, source=fetched)
        cleaned = runner.stage("clean", plan.text.clean, text=ingested)
        chars = TextSummary.of(cleaned).chars
        return Compared(cleaned, 0, chars, f"{gate.eval_source} (clean {cleaned.key[:12]})")
    clean = made.stages["clean"]
    val_fraction = BatchesSummary.of(made.stages["batches"]).spec.val_fraction
    start, end = evaluated_range(TextSummary.of(clean).chars, EvaluateParams(split="val"), val_fraction)
    return Compared(
        clean, start, end, f"v{made.version}'s validation tail (clean {clean.key[:12]} [{start:,}, {end:,}))"
    )


def decision_markdown(decision: Decision, made_now: bool) -> str:
    """The decision as a person reads it: the verdict, both models' figures and samples side by side."""
    sides = [("new", decision.new)] + ([] if decision.held is None else [(decision.alias, decision.held)])
    rows = [
        {
            "": who,
            "model": f"`{side.model[:12]}`" + (f" (v{side.version})" if side.version is not None else ""),
            "vocabulary": f"`{side.vocab[:12]}` ({side.vocab_size:,})",
            "charged unknown": f"{side.charged:,}",
            "bits per char": f"{side.bits_per_char:.4f}",
            "perplexity": f"{side.perplexity:.4f}",
            "sample": text(side.sample.replace("\n", VISIBLE["\n"])),
        }
        for who, side in sides
    ]
    change = (
        f"Vocabulary change from {decision.alias}'s to the new model's: {decision.added:,} added"
        + (f" ({text(' '.join(map(visible, decision.added_shown)))})" if decision.added_shown else "")
        + f", {decision.removed:,} removed"
        + (f" ({text(' '.join(map(visible, decision.removed_shown)))})" if decision.removed_shown else "")
        + "."
        if decision.held is not None
        else ""
    )
    rule = (
        f"Each model is charged for the same {decision.characters:,} characters (every character of the text "
        f"compared but its first): -log2 of the model's probability for a character in its vocabulary, "
        f"{decision.unknown_bits:.4f} bits (log2 of the 1,114,112 Unicode code points) for one outside it. "
        f"The new model takes `{decision.alias}` when its perplexity is at most the champion's × "
        f"(1 + {decision.tolerance:g})."
    )
    samples = f"Samples: prefix {code(decision.prefix)}, seed {decision.seed}, temperature {decision.temperature:g}."
    title = f"## {decision.verdict}: {text(decision.corpus)} v{decision.version}, `{decision.alias}`"
    earlier = "" if made_now else f"\n\nDecided before, at {decision.created}: not decided again."
    return "\n\n".join(
        part for part in [title + earlier, text(decision.message), markdown_table(rows), change, rule, samples] if part
    )


def gate(made: Prepared, params: GateParams, prefix: str, seed: int) -> dict[str, Any]:
    """Decide for the version's model; the decision (made now or before) as a row's JSON."""
    compared = compared_text(made, params)
    done = compute.call(
        decide_task,
        corpus=made.corpus,
        version=made.version,
        model=made.stages["train"],
        compared=compared,
        gate=params,
        prefix=prefix,
        seed=seed,
    )
    create_markdown_artifact(
        key=corpus_prefix(made.corpus) + DECISION_KEY,
        markdown=decision_markdown(done.decision, done.made),
        description=f"the quality gate's decision for {params.promote}",
    )
    return {**done.decision.model_dump(mode="json"), "decided_now": done.made, "moved": done.move is not None}
