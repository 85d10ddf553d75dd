"""The `charflow` command. Prefect's settings are fixed before anything imports Prefect."""

from __future__ import annotations

import argparse
import codecs
import json
import sys
from typing import Any

from pydantic import ValidationError

from charflow import settings


def _unescape(text: str) -> str:
    return codecs.decode(text, "unicode_escape") if "\\" in text else text


def _replacement(spec: str) -> tuple[str, str]:
    if "=" not in spec:
        raise argparse.ArgumentTypeError(f"expected OLD=NEW (escapes such as \\n allowed), got {spec!r}")
    old, new = spec.split("=", 1)
    return _unescape(old), _unescape(new)


def _max_chars(value: str) -> int | None:
    if value.lower() in ("none", "all"):
        return None
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of characters or 'none', got {value!r}") from None


def _add_prepare_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", nargs="?", help="file, folder, .zip or http(s) URL (default: the book's lyrics)")
    parser.add_argument("--name", help="corpus name (default: from the source's file name)")
    parser.add_argument("--sha256", help="expected sha256 of the source's bytes")
    ingest = parser.add_argument_group("ingest")
    ingest.add_argument("--decode-errors", choices=["strict", "replace"], default="strict")
    ingest.add_argument("--pattern", action="append", help="text file / zip member pattern (default: *.txt)")
    ingest.add_argument("--max-uncompressed-bytes", type=int, help="cap on a zip's expanded size")
    clean = parser.add_argument_group("clean")
    clean.add_argument(
        "--replace",
        action="append",
        type=_replacement,
        metavar="OLD=NEW",
        help="replacement, repeatable, applied in order (default: \\n= and \\r= to a space)",
    )
    clean.add_argument("--no-replace", action="store_true", help="no replacements at all")
    clean.add_argument("--max-chars", type=_max_chars, default=10_000, help="keep the first N characters, or 'none'")
    clean.add_argument("--normalize", choices=["NFC", "NFKC"])
    clean.add_argument("--lowercase", action="store_true")
    vocab = parser.add_argument_group("vocab")
    vocab.add_argument("--order", choices=["codepoint", "frequency"], default="codepoint")
    vocab.add_argument("--reserved", action="append", default=[], help="reserved token such as '<unk>', repeatable")
    vocab.add_argument("--min-count", type=int, default=1, help="rarer characters map to <unk>")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def _add_sampler_options(parser: argparse.ArgumentParser) -> None:
    sampler = parser.add_argument_group("batches")
    sampler.add_argument("--sampler", choices=["random", "consecutive"], default="random")
    sampler.add_argument("--batch-size", type=int, default=32)
    sampler.add_argument("--num-steps", type=int, default=35)
    sampler.add_argument("--seed", type=int, default=0)
    sampler.add_argument("--epochs", type=int, default=250)
    sampler.add_argument("--keep-last", action="store_true", help="keep a partial last batch (random sampling)")
    sampler.add_argument("--random-offset", action="store_true", help="a seeded start offset per epoch")
    sampler.add_argument("--max-shard-rows", type=int, default=65_536, help="rows per Parquet shard, at most")
    sampler.add_argument("--val-fraction", type=float, default=0.0, help="hold out the sequence's tail (default 0)")


def _sampler_params(args: argparse.Namespace) -> Any:
    from tasks.batches import BatchesParams

    return BatchesParams(
        sampler=args.sampler,
        batch_size=args.batch_size,
        num_steps=args.num_steps,
        seed=args.seed,
        epochs=args.epochs,
        drop_last=not args.keep_last,
        random_offset=args.random_offset,
        max_shard_rows=args.max_shard_rows,
        val_fraction=args.val_fraction,
    )


def _clip(value: str) -> float | None:
    return None if value.lower() == "none" else float(value)


def _add_train_options(parser: argparse.ArgumentParser) -> None:
    train = parser.add_argument_group("train (defaults: the book's scratch RNN)")
    train.add_argument("--model", default="scratch", help="scratch, rnn, gru or lstm")
    train.add_argument("--hidden", type=int, default=256)
    train.add_argument("--layers", type=int, default=1)
    train.add_argument("--dropout", type=float, default=0.0)
    train.add_argument("--optimizer", default="sgd", help="sgd or adam")
    train.add_argument("--lr", type=float, default=100.0)
    train.add_argument("--clip", type=_clip, default=0.01, help="global gradient-norm bound, or 'none'")
    train.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    train.add_argument("--pred-period", type=int, default=50, help="sample every N epochs")
    train.add_argument("--prefix", action="append", help="prediction prefix, repeatable (default: 分开, 不分开)")
    train.add_argument("--pred-chars", type=int, default=50)
    train.add_argument("--checkpoint-every", type=int, default=10, help="epochs between checkpoints")


def _train_params(args: argparse.Namespace) -> Any:
    from tasks.train import TrainParams

    chosen = {
        name: getattr(args, name)
        for name in (
            "model",
            "hidden",
            "layers",
            "dropout",
            "optimizer",
            "lr",
            "clip",
            "device",
            "pred_period",
            "pred_chars",
            "checkpoint_every",
            "seed",
        )
    }
    if args.prefix:
        chosen["prefixes"] = tuple(args.prefix)
    return TrainParams(**chosen)


def _prepare_params(args: argparse.Namespace) -> dict[str, Any]:
    from tasks.clean import CleanParams
    from tasks.ingest import IngestParams
    from tasks.vocab import VocabParams

    ingest: dict[str, Any] = {"errors": args.decode_errors}
    if args.pattern:
        ingest["patterns"] = tuple(args.pattern)
    if args.max_uncompressed_bytes is not None:
        ingest["max_uncompressed_bytes"] = args.max_uncompressed_bytes
    clean: dict[str, Any] = {"max_chars": args.max_chars, "normalize": args.normalize, "lowercase": args.lowercase}
    if args.no_replace:
        clean["replacements"] = ()
    elif args.replace:
        clean["replacements"] = tuple(args.replace)
    return {
        "source": args.source,
        "name": args.name,
        "sha256": args.sha256,
        "ingest": IngestParams(**ingest),
        "clean": CleanParams(**clean),
        "vocab": VocabParams(order=args.order, reserved=tuple(args.reserved), min_count=args.min_count),
    }


def _print_prepared(prepared: Any, as_json: bool) -> None:
    if as_json:
        print(json.dumps(prepared.model_dump(mode="json"), ensure_ascii=False, indent=2))
        return
    state = "new version" if prepared.new_version else "known version"
    print(f"corpus {prepared.corpus} v{prepared.version} ({state}, sha256 {prepared.sha256[:12]})")
    for stage, ref in prepared.stages.items():
        how = "cached" if ref.cache_hit else "computed"
        facts = ", ".join(f"{k}={v}" for k, v in ref.summary.items() if isinstance(v, (int, str)) and k != "source")
        print(f"  {stage:<7} {ref.key[:12]}  {how:<8}  {facts}\n          {ref.path}")


def cmd_prepare(args: argparse.Namespace) -> int:
    params = _prepare_params(args)
    from flows.prepare import prepare

    _print_prepared(prepare(**params), args.json)
    return 0


def describe_validation_error(exc: ValidationError) -> str:
    """One line per problem: the parameter, the value given, and what is expected."""
    problems = []
    for error in exc.errors():
        field = ".".join(map(str, error["loc"])) or exc.title
        given = f"={error['input']!r}" if error["loc"] and not isinstance(error["input"], dict) else ""
        problems.append(f"{field}{given}: {error['msg']}")
    return "; ".join(problems)


def cmd_batches(args: argparse.Namespace) -> int:
    params = {**_prepare_params(args), "sampler": _sampler_params(args)}
    from flows.batches import batches

    _print_prepared(batches(**params), args.json)
    return 0


def _print_trained(result: Any, as_json: bool) -> None:
    model = result.stages["train"]
    if as_json:
        out = result.model_dump(mode="json")
        out["model"] = out["stages"]["train"]
        out["perplexity"] = model.summary["perplexity"]
        print(json.dumps(out, ensure_ascii=False, indent=2))
        return
    _print_prepared(result, False)
    val = model.summary.get("val_perplexity")
    held = f", validation {val:.3f}" if val is not None else ""
    print(f"final perplexity {model.summary['perplexity']:.3f}{held} after {model.summary['epochs']} epochs")
    for sample in model.summary["samples"]:
        print(f"  {sample['text']}")


def cmd_run(args: argparse.Namespace) -> int:
    spec, training = _sampler_params(args), _train_params(args)
    flat = {**spec.model_dump(), **training.model_dump()}
    from flows.train import train

    _print_trained(train(**_prepare_params(args), **flat), args.json)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    if not args.batches:
        return cmd_run(args)
    training = _train_params(args)
    from flows.train import train_batches

    refs = train_batches(batches=args.batches, training=training)
    model = refs["train"]
    if args.json:
        out = {name: ref.model_dump(mode="json") for name, ref in refs.items()}
        print(
            json.dumps(
                {**out, "model": out["train"], "perplexity": model.summary["perplexity"]}, ensure_ascii=False, indent=2
            )
        )
    else:
        print(f"model {model.key[:12]}  {'cached' if model.cache_hit else 'trained'}  {model.path}")
        print(f"final perplexity {model.summary['perplexity']:.3f} after {model.summary['epochs']} epochs")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from artifacts.store import Store
    from tasks.generate import generate

    store = Store(settings.store_root())
    for prefix in args.prefix or ["分开"]:
        print(generate(store, args.model, prefix, args.chars, vocab_key=args.vocab))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from charflow.serve import serve

    return serve(args.port)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="charflow", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    prepare = commands.add_parser("prepare", help="ingest, clean, build the vocabulary and encode a corpus")
    _add_prepare_options(prepare)
    prepare.set_defaults(func=cmd_prepare)
    batches = commands.add_parser("batches", help="prepare a corpus, then generate and store its minibatches")
    _add_prepare_options(batches)
    _add_sampler_options(batches)
    batches.set_defaults(func=cmd_batches)
    run = commands.add_parser("run", help="prepare, batches and train end to end (the book's settings)")
    _add_prepare_options(run)
    _add_sampler_options(run)
    _add_train_options(run)
    run.set_defaults(func=cmd_run)
    train = commands.add_parser("train", help="train on a corpus (as run) or on an existing batches artifact")
    _add_prepare_options(train)
    _add_sampler_options(train)
    _add_train_options(train)
    train.add_argument("--batches", help="an existing batches artifact: key, key prefix or folder")
    train.set_defaults(func=cmd_train)
    generate = commands.add_parser("generate", help="continue a prefix with a trained model")
    generate.add_argument("model", help="a train artifact: key, key prefix or folder")
    generate.add_argument("--prefix", action="append", help="repeatable (default: 分开)")
    generate.add_argument("--chars", type=int, default=50)
    generate.add_argument("--vocab", help="refuse the model unless its vocabulary has this key")
    generate.set_defaults(func=cmd_generate)
    from charflow.inspect_cli import add_parser as add_inspect

    add_inspect(commands)
    serve = commands.add_parser("serve", help="a Prefect server, the work pool, the deployments and a worker")
    serve.add_argument("--port", type=int, default=4200, help="the server's port on 127.0.0.1")
    serve.set_defaults(func=cmd_serve)
    return parser


def main(argv: list[str] | None = None) -> int:
    settings.configure()
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ValidationError as exc:
        print(f"charflow: invalid parameters: {describe_validation_error(exc)}", file=sys.stderr)
        return 2
    except (ValueError, OSError, LookupError, RuntimeError) as exc:
        print(f"charflow: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
