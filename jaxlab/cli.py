"""``jaxlab`` command line: ``run CONFIG.yaml [key=value ...]``, ``export CHECKPOINT OUT_DIR`` and ``serve MODEL``.

A run config names its runner module (``runner: experiments.ptl.runner``);
the module provides a frozen ``Config`` dataclass and ``run(cfg) -> dict``.
The whole YAML is validated into ``Config`` before any work starts, so an
unknown or mistyped key fails at once, naming the key. Exit status: 0 done,
2 config error (including an ``output_dir`` that holds another run's results),
1 run failed (:class:`jaxlab.runs.RunFailedError`, e.g. every model call failed).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import sys
from typing import Any

from jaxlab.config import ConfigError, apply_overrides, from_dict, load_yaml
from jaxlab.runs import RunFailedError


def resolve_runner(name: Any) -> Any:
    """Import the runner module and check it has ``Config`` and ``run``."""
    if not isinstance(name, str) or not name:
        raise ConfigError("runner: expected a module path such as 'experiments.ptl.runner'")
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as exc:
        raise ConfigError(f"runner: cannot import {name!r} ({exc})") from exc
    for attr in ("Config", "run"):
        if not hasattr(module, attr):
            raise ConfigError(f"runner: module {name!r} has no {attr!r}")
    return module


def load_run_config(path: str, overrides: list[str]) -> tuple[Any, Any]:
    """(runner module, validated Config) for a YAML file plus ``key=value`` overrides."""
    raw = apply_overrides(load_yaml(path), overrides)
    if "runner" not in raw:
        raise ConfigError(f"{path}: missing required key 'runner' (the module that runs this config)")
    module = resolve_runner(raw["runner"])
    if "runner" not in {f.name for f in dataclasses.fields(module.Config)}:
        raw = {k: v for k, v in raw.items() if k != "runner"}
    if "output_dir" not in {f.name for f in dataclasses.fields(module.Config)}:
        raise ConfigError(f"runner {raw.get('runner')!r}: its Config has no 'output_dir' key")
    return module, from_dict(module.Config, raw)


def _cmd_run(args: argparse.Namespace) -> int:
    try:
        module, cfg = load_run_config(args.config, args.overrides)
        module.run(cfg)
    except ConfigError as exc:  # from the YAML, or found by the run, e.g. output_dir holds another run
        print(f"jaxlab run: config error: {exc}", file=sys.stderr)
        return 2
    except RunFailedError as exc:
        print(f"jaxlab run: run failed: {exc}", file=sys.stderr)
        return 1
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from jaxlab.train.export import export_checkpoint

    try:
        export_checkpoint(args.checkpoint, args.out_dir)
    except FileNotFoundError as exc:
        print(f"jaxlab export: {exc}", file=sys.stderr)
        return 2
    return 0


def _cmd_serve(args: argparse.Namespace, rest: list[str]) -> int:
    from jaxlab.llm.serve_cli import main as serve_main

    return serve_main([args.model, *rest])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="jaxlab", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a config: jaxlab run configs/ptl_smollm2.yaml key=value ...")
    run.add_argument("config")
    run.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. train.steps=10")
    export = sub.add_parser(
        "export",
        help="write a run's checkpoint as a Hugging Face folder: jaxlab export RUN_DIR/checkpoints[/STEP] OUT_DIR",
    )
    export.add_argument("checkpoint", help="RUN_DIR, RUN_DIR/checkpoints (latest step) or RUN_DIR/checkpoints/STEP")
    export.add_argument("out_dir")
    serve = sub.add_parser(
        "serve",
        help="serve a model as an OpenAI-compatible API (FastAPI + uvicorn): jaxlab serve smollm2 --port 8000",
        add_help=False,
    )
    serve.add_argument("model")
    args, rest = parser.parse_known_args(argv)
    if args.command in ("run", "export"):
        if rest:
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
        return _cmd_run(args) if args.command == "run" else _cmd_export(args)
    return _cmd_serve(args, rest)


if __name__ == "__main__":
    sys.exit(main())
