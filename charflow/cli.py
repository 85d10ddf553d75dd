"""The `charflow` command. Prefect's settings are fixed before anything imports Prefect."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Any, NoReturn

from pydantic import ValidationError

from artifacts.settings import SettingsError, environment
from charflow import options
from charflow.serve import ServeParams
from flows import home, interrupt, tracking
from flows.progress import artifact_line, version_line
from tasks.batches import BatchesParams
from tasks.clean import CleanParams
from tasks.errors import CharflowError, Interrupted, ParameterError
from tasks.evaluate import EvaluateParams
from tasks.fetch import NAME_RULE
from tasks.gate import GateParams
from tasks.ingest import IngestParams
from tasks.sweep import SweepParams
from tasks.train.device import without_torch
from tasks.train.params import (
    GenerateParams,
    TrainParams,
    check_prefixes,
    check_sampler,
    generate_prefixes,
    resolve_device,
)
from tasks.vocab import VocabParams


def _add_prepare_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", nargs="?", help="file, folder, .zip or http(s) URL (default: the book's lyrics)")
    parser.add_argument("--name", help=f"corpus name: {NAME_RULE} (default: from the source's file name)")
    parser.add_argument("--sha256", help="expected sha256 of the source's bytes")
    options.add_model(parser, IngestParams, "ingest")
    options.add_model(parser, CleanParams, "clean")
    options.add_model(parser, VocabParams, "vocab")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def _prepare_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The ingest, clean and vocab options, checked by their models, as every flow takes them: flat."""
    return {
        name: value
        for model in (IngestParams, CleanParams, VocabParams)
        for name, value in options.build(args, model).model_dump().items()
    }


def _prepare_params(args: argparse.Namespace) -> dict[str, Any]:
    return {"source": args.source, "name": args.name, "sha256": args.sha256, **_prepare_settings(args)}


def _print_prepared(prepared: Any, as_json: bool) -> None:
    if as_json:
        print(json.dumps(prepared.model_dump(mode="json"), ensure_ascii=False, indent=2))
        return
    print(version_line(prepared.corpus, prepared.version, prepared.new_version, prepared.sha256))
    for stage, ref in prepared.stages.items():
        print(f"  {artifact_line(stage, ref)}\n          {ref.path}")


def describe_validation_error(exc: ValidationError) -> str:
    """One line per problem: the parameter, the value given, and what is expected."""
    problems = []
    for error in exc.errors():
        field = ".".join(map(str, error["loc"])) or exc.title
        given = f"={error['input']!r}" if error["loc"] and not isinstance(error["input"], dict) else ""
        problems.append(f"{field}{given}: {error['msg']}")
    return "; ".join(problems)


def cmd_prepare(args: argparse.Namespace) -> int:
    params = _prepare_params(args)
    from flows.prepare import prepare

    _print_prepared(prepare(**params), args.json)
    return 0


def cmd_batches(args: argparse.Namespace) -> int:
    params = {**_prepare_params(args), **options.build(args, BatchesParams).model_dump()}
    from flows.batches import batches

    _print_prepared(batches(**params), args.json)
    return 0


def _training(args: argparse.Namespace) -> TrainParams:
    """Checked at the edge, the device included, before any work (the flow resolves "auto" itself where
    that needs torch)."""
    training = without_torch(options.build(args, TrainParams))
    resolve_device(training)
    return training


def _print_trained(result: Any, as_json: bool) -> None:
    from artifacts.model import TrainSummary

    model = result.stages["train"]
    summary = TrainSummary.of(model)
    if as_json:
        out = result.model_dump(mode="json")
        out["model"] = out["stages"]["train"]
        out["perplexity"] = summary.perplexity
        print(json.dumps(out, ensure_ascii=False, indent=2))
        return
    _print_prepared(result, False)
    held = f", validation {summary.val_perplexity:.3f}" if summary.val_perplexity is not None else ""
    print(f"final perplexity {summary.perplexity:.3f}{held} after {summary.epochs} epochs")
    for sample in summary.samples:
        print(f"  {sample.text}")


def cmd_run(args: argparse.Namespace) -> int:
    sampler, training = options.build(args, BatchesParams), _training(args)
    params = _prepare_params(args)
    from flows.train import train

    _print_trained(train(**params, **{**sampler.model_dump(), **training.model_dump()}), args.json)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    if not args.batches:
        return cmd_run(args)
    training = _training(args)
    from flows.train import train_batches

    _print_trained_on(train_batches(batches=args.batches, **training.model_dump()), args.json)
    return 0


def _print_trained_on(refs: dict[str, Any], as_json: bool) -> None:
    from artifacts.model import TrainSummary

    model = refs["train"]
    summary = TrainSummary.of(model)
    if as_json:
        out = {name: ref.model_dump(mode="json") for name, ref in refs.items()}
        out.update(model=out["train"], perplexity=summary.perplexity)
        print(json.dumps(out, ensure_ascii=False, indent=2))
    else:
        print(f"model {model.key[:12]}  {'cached' if model.cache_hit else 'trained'}  {model.path}")
        print(f"final perplexity {summary.perplexity:.3f} after {summary.epochs} epochs")


def _reingest_settings(args: argparse.Namespace) -> dict[str, Any]:
    """Every prepare, batches, train and gate option, checked by its model, flat as the flow takes them."""
    settings = _prepare_settings(args)
    for model in (BatchesParams, GateParams):
        settings.update(options.build(args, model).model_dump())
    return {**settings, **_training(args).model_dump()}


def _check_reingest(args: argparse.Namespace) -> None:
    """The gate's settings against the run's (--promote needs --train and held-out text), the training's against
    its batches, and --eval-source's first bytes: before any work."""
    from artifacts.decisions import check_gate
    from flows.pipeline import PrepareParams
    from tasks.precheck import check_before_work

    sampler, gate = options.build(args, BatchesParams), options.build(args, GateParams)
    check_gate(gate, args.train, sampler)
    if not args.train and (unused := [*options.given(args, BatchesParams), *options.given(args, TrainParams)]):
        flags = ", ".join(sorted({"--" + name.replace("_", "-") for name in unused}))
        raise ParameterError(f"{flags} shape{'s' * (len(unused) == 1)} the training: add --train")
    if args.train:
        params = PrepareParams.of(_prepare_settings(args))
        _check_training(_training(args), sampler, params)
        if gate.eval_source is not None:
            check_before_work(gate.eval_source, params.ingest)


def cmd_reingest(args: argparse.Namespace) -> int:
    from flows.reingest import reingest

    rows = reingest(sources=args.sources or None, train=args.train, **_reingest_settings(args))
    if args.json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return 0
    for row in rows:
        version = f"v{row['version']}" if row["version"] is not None else ""
        print(f"{row['corpus']:<24} {row['status']:<9} {version:<5} {row['source']}")
        if row["keys"]:
            print(f"  {row['keys']}")
        if decision := row.get("decision"):
            print(f"  {decision['message']}" + ("" if decision["decided_now"] else " (decided before)"))
            for who, side in (("new", decision["new"]), (decision["alias"], decision["held"])):
                if side is not None:
                    print(f"    {who:<10} {side['model'][:12]} sample: {side['sample']!r}")
    print(f"{len(rows)} corpora looked at")
    return 0


def _sweep_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The run options given (the grid's combinations complete them, each built whole by its models), flat."""
    given = {**options.given(args, BatchesParams), **options.given(args, TrainParams)}
    return {**_prepare_params(args), **given}


def _check_sweep(args: argparse.Namespace, params: Any) -> None:
    """The grid, every combination built and checked as `run` checks one, before any server starts."""
    from tasks.sweep import GridError, expand, runs, shown

    swept = options.build(args, SweepParams)
    given = {**options.given(args, BatchesParams), **options.given(args, TrainParams)}
    for name, entry in zip(expand(swept.grid)[0], swept.grid, strict=True):
        if name in given:
            raise GridError(f"{name} is both --{name.replace('_', '-')} and --grid {entry!r}; give it once")
    for combination, sampler, training in runs(_sweep_settings(args), swept.grid):
        try:
            training = without_torch(training)
            resolve_device(training)
            _check_training(training, sampler, params)
        except (CharflowError, ValueError) as exc:
            raise GridError(f"the grid's run {shown(combination)}: {exc}") from None


def cmd_sweep(args: argparse.Namespace) -> int:
    swept = options.build(args, SweepParams)
    from flows.sweep import SweepFailed, sweep

    try:
        rows = sweep(**_sweep_settings(args), **swept.model_dump())
    except SweepFailed as failed:  # the others' rows first, then the one line naming the failed runs
        _print_sweep(failed.rows, args.json)
        raise
    _print_sweep(rows, args.json)
    return 0


def _print_sweep(rows: list[dict[str, Any]], as_json: bool) -> None:
    """The leaderboard, best first, a failed run with its error (JSON: every row, in run order)."""
    from flows.sweep import leaderboard

    if as_json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    keys = list(rows[0])
    names = keys[1 : keys.index("status")]  # the grid's settings, between the run's number and its status
    print(f"{'run':>3}  {'  '.join(f'{n:>10}' for n in names)}  {'status':<7}  {'model':<12}  perplexity  validation")
    for row in leaderboard(rows):
        values = "  ".join(f"{str(row[n]):>10}" for n in names)
        if row["status"] == "failed":
            print(f"{row['run']:>3}  {values}  failed   {row['error']}")
            continue
        held = "" if row["val_perplexity"] is None else f"{row['val_perplexity']:10.3f}"
        print(f"{row['run']:>3}  {values}  {row['status']:<7}  {row['model'][:12]}  {row['perplexity']:10.3f}  {held}")


def cmd_generate(args: argparse.Namespace) -> int:
    params = options.build(args, GenerateParams)  # every bad value refused before the store is opened
    prefixes = generate_prefixes(params)
    from artifacts.backends import open_catalog, open_store
    from artifacts.model import TrainSummary, load_model
    from artifacts.refs import resolve
    from artifacts.vocab import VocabMismatch, read_vocab
    from tasks.train.generate import sample_texts

    store, catalog = open_store(home.store_root()), open_catalog(home.store_root())
    ref = resolve(store, catalog, args.model, "train", verify=True)
    own = TrainSummary.of(ref).vocab_key
    if params.vocab is not None and params.vocab != own:
        raise VocabMismatch(
            f"model {ref.key[:12]} was trained with vocabulary {own[:12]}, not {params.vocab[:12]}; "
            "use a model trained on this vocabulary"
        )
    vocab = read_vocab(resolve(store, catalog, own, "vocab", verify=True).path)
    check_prefixes(vocab, prefixes)  # before the model is loaded
    model, device = load_model(ref.path, vocab, checkpoint=params.checkpoint)
    drawn = {
        "temperature": params.temperature,
        "top_k": params.top_k,
        "top_p": params.top_p,
        "num_samples": params.num_samples,
        "seed": params.seed,
    }
    rows = [
        {"prefix": prefix, "sample": number, "text": text}
        for prefix in prefixes
        for number, text in enumerate(sample_texts(model, vocab, prefix, params.chars, device, **drawn))
    ]
    if params.as_json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
    else:
        for row in rows:  # one text a line: each prefix's samples in turn
            print(row["text"])
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    params = options.build(args, EvaluateParams)
    from flows.evaluate import evaluate

    _print_evaluated(evaluate(model=args.model, text=args.text, **params.model_dump()), args.json)
    return 0


def _print_evaluated(made: dict[str, Any], as_json: bool) -> None:
    evaluation = made["evaluate"]
    summary = evaluation.summary
    if as_json:
        stages = {name: ref.model_dump(mode="json") for name, ref in made.items()}
        print(json.dumps({**summary, "evaluation": stages["evaluate"], "stages": stages}, ensure_ascii=False, indent=2))
        return
    print(f"evaluation {evaluation.key[:12]}  {'cached' if evaluation.cache_hit else 'evaluated'}  {evaluation.path}")
    print(
        f"perplexity {summary['perplexity']:.4f}, {summary['bits_per_char']:.4f} bits per character on "
        f"{summary['tokens']:,} predictions ({summary['chars']:,} characters, {summary['split']}; model "
        f"{summary['model_key'][:12]}, {summary['checkpoint']} checkpoint, {summary['device']})"
    )
    if summary["unknown_mapped"]:
        print(f"{summary['unknown_mapped']:,} characters outside the vocabulary were scored as <unk>")
    if summary["unknown_skipped"]:
        print(f"{summary['unknown_skipped']:,} characters outside the vocabulary were skipped")


def _check_evaluation(args: argparse.Namespace) -> None:
    """The model, its batches and vocabulary, a corpus version, the settings against the model, and a source's
    first bytes: checked in the store, before any server starts."""
    from artifacts.backends import open_catalog, open_store
    from artifacts.refs import resolve
    from flows.pipeline import SourceText, plan_evaluation
    from tasks.precheck import check_before_work

    store, catalog = open_store(home.store_root()), open_catalog(home.store_root())
    plan = plan_evaluation(
        lambda ref, stage: resolve(store, catalog, ref, stage),
        args.model,
        args.text,
        options.build(args, EvaluateParams),
    )
    if isinstance(plan.text, SourceText):
        check_before_work(plan.text.located.source, plan.text.ingest)


def cmd_promote(args: argparse.Namespace) -> int:
    from artifacts import promotion
    from artifacts.backends import open_catalog, open_store

    params = options.build(args, promotion.PromoteParams)  # a bad name or combination refused before any work
    if params.unset:
        promotion.unset_target(args.target)
    store, catalog = open_store(home.store_root()), open_catalog(home.store_root())
    if params.unset:
        moved = promotion.unset(catalog, args.target, params.why)
    else:
        assert params.alias is not None
        moved, corpus, model = promotion.promote(store, catalog, args.target, params.alias, params.why)
        if moved is None:
            print(f"{corpus}@{params.alias} names {model[:12]} already: nothing moved")
            return 0
    print(promotion.describe(moved))
    # MLflow's registered-model alias follows charflow's (where MLFLOW_TRACKING_URI is set; one warning if not taken).
    tracking.set_alias(moved.corpus, moved.name, moved.model, tracking.store_url(store), why=params.why)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from charflow.serve import serve

    params = options.build(args, ServeParams)
    return serve(params.port, params.database)


def cmd_server(args: argparse.Namespace) -> int:
    from charflow import home_server

    if args.action == "stop":
        stopped = home_server.stop()
        print(f"stopped the Prefect server at {stopped.url}" if stopped else "no Prefect server runs for this home")
        return 0
    status = home_server.status()
    if args.json:
        print(json.dumps(status, indent=2))
    elif not status["running"]:
        print(f"no Prefect server runs for this home ({status['prefect_home']}); the next command starts one")
    else:
        use = "in use" if status["in_use"] else f"idle for {status['idle_seconds']} s"
        print(
            f"Prefect server at {status['url']} (pid {status['pid']}), {use}; it stops after "
            f"{status['stops_after_idle_seconds']:g} s unused (CHARFLOW_SERVER_IDLE)"
        )
    return 0


def cmd_share(args: argparse.Namespace) -> int:
    """Copy this home's store and catalog into the shared backends, then check the copy."""
    from artifacts import backends
    from artifacts.catalog import JsonlCatalog
    from artifacts.share import share
    from artifacts.store import Store

    store_url, catalog_url = backends.urls()
    if not (store_url and catalog_url):
        raise backends.BackendError(
            "charflow share copies this home's store and catalog into the shared backends: set "
            "CHARFLOW_STORE_URL and CHARFLOW_CATALOG_URL to them first"
        )
    root = home.store_root()
    report = share(Store(root), JsonlCatalog(root), backends.open_store(root), backends.open_catalog(root))
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"{backends.describe()}")
        print(
            f"published {len(report['published'])} artifacts ({len(report['already_there'])} were there already), "
            f"checked {report['verified']} by their digests"
        )
        for moved in report["versions"]:
            renumbered = "" if moved["local"] == moved["shared"] else f" (v{moved['local']} here)"
            print(f"  {moved['corpus']} v{moved['shared']}{renumbered}")
        for damaged in report["damaged"]:
            print(f"  not shared, damaged: {damaged['stage']} {damaged['key'][:12]}: {'; '.join(damaged['problems'])}")
    return 1 if report["damaged"] else 0


class Parser(argparse.ArgumentParser):
    """argparse's, but a refusal is one line (its usage block aside): the command, the problem, where help is."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} ({self.prog} --help lists the options)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="charflow", description=__doc__)
    parser.add_argument(
        "--debug", action="store_true", help="show the traceback of a failure (or set CHARFLOW_DEBUG=1)"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    prepare = commands.add_parser("prepare", help="ingest, clean, build the vocabulary and encode a corpus")
    _add_prepare_options(prepare)
    prepare.set_defaults(func=cmd_prepare)
    batches = commands.add_parser("batches", help="prepare a corpus, then generate and store its minibatches")
    _add_prepare_options(batches)
    options.add_model(batches, BatchesParams, "batches")
    batches.set_defaults(func=cmd_batches)
    for name, help in [
        ("run", "prepare, batches and train end to end (the book's settings)"),
        ("train", "train on a corpus (as run) or on an existing batches artifact"),
    ]:
        command = commands.add_parser(name, help=help)
        _add_prepare_options(command)
        options.add_model(command, BatchesParams, "batches")
        options.add_model(command, TrainParams, "train (defaults: the book's scratch RNN)", skip={"seed"})
        options.add_model(command, tracking.TrackingParams, "MLflow (with MLFLOW_TRACKING_URI set)")
        command.set_defaults(func=cmd_run)
    train = commands.choices["train"]
    train.add_argument(
        "--batches", help="an existing batches artifact: key, key prefix, folder or corpus@version/batches"
    )
    train.set_defaults(func=cmd_train)
    reingest = commands.add_parser(
        "reingest",
        help="prepare (or train on) every corpus among the sources that is new or changed; with --promote, move an "
        "alias to each new version's model unless it is worse than the model the alias names (docs/gate.md)",
    )
    reingest.add_argument("sources", nargs="*", help="files, folders, .zips, globs or URLs (default: ./corpora)")
    reingest.add_argument("--train", action="store_true", help="also train a model (the book's settings)")
    for model, title in ((IngestParams, "ingest"), (CleanParams, "clean"), (VocabParams, "vocab")):
        options.add_model(reingest, model, title)
    options.add_model(reingest, BatchesParams, "batches (with --train)")
    options.add_model(reingest, TrainParams, "train (with --train; defaults: the book's scratch RNN)", skip={"seed"})
    options.add_model(reingest, GateParams, "quality gate (with --train --promote NAME)")
    reingest.add_argument("--json", action="store_true", help="print the rows as JSON")
    reingest.set_defaults(func=cmd_reingest)
    sweep = commands.add_parser(
        "sweep", help="prepare once, then train a model for every combination of --grid NAME=V1,V2,... and rank them"
    )
    _add_prepare_options(sweep)
    options.add_model(sweep, SweepParams, "sweep")
    options.add_model(sweep, BatchesParams, "batches")
    options.add_model(sweep, TrainParams, "train (defaults: the book's scratch RNN)", skip={"seed"})
    options.add_model(sweep, tracking.TrackingParams, "MLflow (with MLFLOW_TRACKING_URI set)")
    sweep.set_defaults(func=cmd_sweep)
    generate = commands.add_parser(
        "generate",
        help="continue a prefix with a trained model: greedy as the book's, or sampled; one text a line (each "
        "prefix's samples in turn), or --json",
    )
    generate.add_argument("model", help="a train artifact: key, key prefix, folder or corpus@version/train")
    options.add_model(generate, GenerateParams, "generate")
    generate.set_defaults(func=cmd_generate)
    evaluate = commands.add_parser("evaluate", help="a model's perplexity and bits per character on any text")
    evaluate.add_argument("model", help="a train artifact: key, key prefix, folder or corpus@version/train")
    evaluate.add_argument(
        "text", help="file, folder, .zip or http(s) URL (cleaned as the model's corpus), or corpus@version"
    )
    options.add_model(evaluate, EvaluateParams, "evaluate")
    evaluate.add_argument("--json", action="store_true", help="print the result as JSON")
    evaluate.set_defaults(func=cmd_evaluate)
    from charflow.inspect_cli import add_parser as add_inspect

    add_inspect(commands)
    from artifacts.promotion import PromoteParams

    promote = commands.add_parser(
        "promote", help="name a model of its corpus (MODEL --as champion), or unset a name (CORPUS@NAME --unset)"
    )
    promote.add_argument(
        "target",
        metavar="MODEL",
        help="the model: key, key prefix, folder or corpus@version/train; with --unset, CORPUS@NAME",
    )
    options.add_model(promote, PromoteParams, "promote")
    promote.set_defaults(func=cmd_promote)
    serve = commands.add_parser("serve", help="a Prefect server, the work pool, the deployments and a worker")
    options.add_model(serve, ServeParams, "serve")
    serve.set_defaults(func=cmd_serve)
    server = commands.add_parser(
        "server", help="this home's Prefect server (started by the first command that needs one, stopped when idle)"
    )
    server.add_argument("action", choices=["status", "stop"], help="status: whether it runs, where; stop: stop it")
    server.add_argument("--json", action="store_true", help="print the status as JSON")
    server.set_defaults(func=cmd_server)
    share = commands.add_parser(
        "share", help="copy this home's store and catalog into CHARFLOW_STORE_URL and CHARFLOW_CATALOG_URL"
    )
    share.add_argument("--json", action="store_true", help="print the report as JSON")
    share.set_defaults(func=cmd_share)
    return parser


# Commands that run flows: they write to the home and need a Prefect API.
RUNS_FLOWS = {"prepare", "batches", "run", "train", "reingest", "evaluate", "sweep"}
ANSWERABLE = RUNS_FLOWS - {"reingest", "sweep"}


class QuietConsole(logging.Filter):
    """Keeps Prefect's console from printing a traceback for a failure charflow explains in one line, and
    from counting the logs it still has to send at exit."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, CharflowError | ValidationError):
            return False
        return not str(record.msg).startswith("Still processing items")


def quiet_prefect_console() -> None:
    """Filter Prefect's own console handlers (its API log handler keeps everything, for the UI)."""
    import prefect.main  # noqa: F401  (sets up Prefect's logging)

    for name in ["", *logging.Logger.manager.loggerDict]:
        for handler in getattr(logging.getLogger(name), "handlers", []):
            if (
                type(handler).__module__.startswith("prefect")
                and isinstance(handler, logging.StreamHandler)
                and not any(isinstance(f, QuietConsole) for f in handler.filters)
            ):
                handler.addFilter(QuietConsole())


def check_arguments(args: argparse.Namespace) -> None:
    """Every parameter model built, their combinations, the backends' URLs and the source's existence, size and
    first bytes checked: bad input is refused before any server starts and before anything is written (the
    commands build the same models again, in microseconds)."""
    if args.command not in RUNS_FLOWS:
        return
    from artifacts import backends
    from flows.pipeline import Needs, PrepareParams
    from tasks.fetch import Located, expand_sources
    from tasks.precheck import MOST_FILES, check_before_work

    backends.urls()  # a malformed store or catalog URL
    if args.command == "evaluate":
        _check_evaluation(args)
        return
    params = PrepareParams.of(_prepare_settings(args))
    # A name `corpus@version` could never reach, a URL with a password (the run's parameters would keep it).
    Located(source=getattr(args, "source", None) or "", name=getattr(args, "name", None))
    on_batches = getattr(args, "batches", None)
    if args.command in ("batches", "run", "train"):
        sampler = options.build(args, BatchesParams)
        if not on_batches:
            Needs(sampler).before_any_work(params)  # --max-chars too short for one batch, say
    if args.command in ("run", "train"):
        training = _training(args)
        tracking.apply(options.build(args, tracking.TrackingParams))  # for this process's runs
        if not on_batches:  # on stored batches: their sampler, batch size, split and steps, checked by the flow
            _check_training(training, sampler, params)
    if args.command == "sweep":
        _check_sweep(args, params)
        tracking.apply(options.build(args, tracking.TrackingParams))  # for this process's runs
    if on_batches:
        return
    if args.command == "reingest":
        _check_reingest(args)
        for located in expand_sources(args.sources)[:MOST_FILES] if args.sources else []:
            check_before_work(located.source, params.ingest)
    elif args.source:
        check_before_work(args.source, params.ingest)


def _check_training(training: TrainParams, sampler: BatchesParams, params: Any) -> None:
    """A training's settings against the batches it will make: the model's sampler, the processes' share of a
    batch, validation where patience or eval-every need it, a warmup past what --max-chars allows."""
    from flows.ddp import check_processes
    from flows.pipeline import Needs
    from tasks.train.params import check_validation

    check_sampler(training.model, sampler.sampler)
    if training.nproc > 1:
        check_processes(training.nproc, training.device, sampler.batch_size)
    check_validation(training, sampler.val_fraction)
    Needs(sampler, training=training).before_any_work(params)


def answer_from_store(args: argparse.Namespace) -> bool:
    """Print the command's answer when everything it would make is stored and recorded already, with no Prefect
    and no server started; with PREFECT_API_URL set, recorded there as a flow run first. True when answered;
    False when it has to run its flow."""
    from flows.answer import answer, answer_train_on
    from flows.run_words import resolved_source
    from tasks.fetch import resolve_source

    api_url = os.environ.get("PREFECT_API_URL")
    if args.command == "evaluate":
        from flows.answer import answer_evaluate

        params = options.build(args, EvaluateParams)
        made = answer_evaluate(args.model, args.text, params)
        parameters = {"model": args.model, "text": args.text, **params.model_dump(mode="json")}
        if made is None or not _recorded(api_url, "evaluate", parameters, made):
            return False
        _print_evaluated(made, args.json)
    elif args.command == "train" and args.batches:
        training = _training(args).model_dump()
        refs = answer_train_on(args.batches, training)
        if refs is None or not _recorded(api_url, "train-batches", {"batches": args.batches, **training}, refs):
            return False
        _print_trained_on(refs, args.json)
    else:
        settings = _prepare_settings(args)
        if args.command != "prepare":
            settings.update(options.build(args, BatchesParams).model_dump())
        if args.command in ("run", "train"):
            settings.update(_training(args).model_dump())
        flow = "train" if args.command == "run" else args.command
        made = answer(flow, args.source, args.name, args.sha256, settings)
        located = resolve_source(args.source, args.name, args.sha256, environment().data_path)
        parameters = {**resolved_source(located), **settings}
        if made is None or not _recorded(api_url, flow, parameters, made.stages, made.corpus, made.version):
            return False
        (_print_trained if flow == "train" else _print_prepared)(made, args.json)
    how = (
        "recorded as a flow run in state Cached on PREFECT_API_URL's server"
        if api_url
        else "with no flow run (set PREFECT_API_URL to record one on a Prefect server)"
    )
    print(f"charflow: every stage was in the store: answered from it, {how}", file=sys.stderr)
    return True


def _recorded(api_url: str | None, flow: str, parameters: dict[str, Any], stages: dict, *corpus: Any) -> bool:
    """Recorded on the server PREFECT_API_URL names, where one is named; False when it would not take it."""
    if not api_url:
        return True
    from flows.recorded import NotRecorded, record_answer

    try:
        record_answer(api_url, flow, parameters, stages, *corpus)
    except NotRecorded:
        return False
    return True


def answers_from_store(args: argparse.Namespace) -> bool:
    """A command that makes artifacts may be answered from the store unless this process runs Prefect already
    (its host's settings stand)."""
    return args.command in ANSWERABLE and "prefect" not in sys.modules


def run_command(args: argparse.Namespace) -> int:
    check_arguments(args)
    folder = home.configure()
    if args.command in RUNS_FLOWS or (args.command == "inspect" and getattr(args, "yes", False)):
        home.check_home(folder)
    if args.command in RUNS_FLOWS:
        from artifacts import backends
        from flows import cluster

        backends.check(home.store_root())  # a bad URL or credentials: refused before any work
        cluster.check()  # a Dask scheduler that does not answer, or workers with no shared store
    if args.command not in RUNS_FLOWS:
        return args.func(args)
    from charflow.home_server import check_reachable, drain_prefect, prefect_api

    if answers_from_store(args):
        if api_url := os.environ.get("PREFECT_API_URL"):
            check_reachable(api_url)
        if answer_from_store(args):
            return 0

    interrupt.reset()
    with interrupt.handled(), prefect_api():
        quiet_prefect_console()
        from prefect.exceptions import TerminationSignal

        try:
            return args.func(args)
        except TerminationSignal:  # Prefect's own SIGTERM handler, active between two stages
            raise Interrupted("stopped by SIGTERM between two stages; run the same command again to go on") from None
        finally:
            drain_prefect()


def _fail(message: str, code: int) -> int:
    """One line on stderr, with any secret the environment holds hidden (a driver's message may quote one), and
    control characters a value brought shown escaped (an escape sequence would act on the terminal)."""
    from artifacts.secrets import scrub

    shown = "".join(ch if ch.isprintable() or ch == " " else ascii(ch)[1:-1] for ch in scrub(message))
    print(shown, file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.debug or environment().debug:
            return run_command(args)
    except SettingsError as exc:
        return _fail(f"charflow: error: {exc}", exc.exit_code)
    try:
        return run_command(args)
    except ValidationError as exc:
        return _fail(f"charflow: invalid parameters: {describe_validation_error(exc)}", 2)
    except CharflowError as exc:
        return _fail(f"charflow: error: {exc}", exc.exit_code)
    except OSError as exc:  # the machine's, not charflow's: a full disk, a permission, a closed port
        return _fail(f"charflow: error: {exc} (charflow --debug shows where)", 1)
    except KeyboardInterrupt:
        return _fail("charflow: stopped at once (a second Ctrl-C); run the same command again to resume", 130)


if __name__ == "__main__":
    sys.exit(main())
