"""``jaxlab serve MODEL [--host] [--port] [--max-batch] [--max-model-len] ...``: load, warm up, serve.

MODEL is ``smollm2`` (the packaged SmolLM2-135M-Instruct), ``echo`` (replies
with the last user message; no model, for wiring tests) or a local Hugging Face
folder with ``config.json`` + safetensors + tokenizer files (e.g. a PTL run's
``hf_model/``).  uvicorn handles SIGTERM/SIGINT: it stops accepting, lets open
requests finish (``--graceful-s``), then the app's shutdown hook stops the engine.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path
from typing import Any

NAMED = ("smollm2", "echo")


def load_backend(model: str, max_batch: int, max_model_len: int | None, name: str | None = None) -> Any:
    """An ``EngineBackend`` for a jaxlab model, a ``ClientBackend`` for ``echo``."""
    from jaxlab.llm.backends import ClientBackend, EngineBackend

    if model == "echo":
        from jaxlab.llm.scripted import echo_client

        return ClientBackend(echo_client(), name or "echo")
    if model == "smollm2":
        from jaxlab.models import load_smollm2

        lm, tokenizer = load_smollm2()
    elif (Path(model) / "config.json").is_file():
        from jaxlab.models.hf import from_hf
        from jaxlab.models.smollm2 import load_tokenizer

        lm, tokenizer = from_hf(model), load_tokenizer(model)
    else:
        raise SystemExit(
            f"jaxlab serve: MODEL: expected one of {list(NAMED)} or a folder with config.json, got {model!r}"
        )
    from jaxlab.llm.engine import BatchEngine

    limit = lm.config.max_position_embeddings
    engine = BatchEngine(lm, tokenizer, max_batch=max_batch, max_model_len=min(max_model_len or 2048, limit))
    return EngineBackend(engine, name or (Path(model).name if model not in NAMED else model))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="jaxlab serve", description="Serve a jaxlab model as an OpenAI-compatible endpoint."
    )
    parser.add_argument("model", help="smollm2 | echo | path to a Hugging Face model folder")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--served-model-name", default=None, help="name clients send as 'model'")
    parser.add_argument("--max-batch", type=int, default=8, help="rows decoded together (requests x n)")
    parser.add_argument("--max-model-len", type=int, default=None, help="prompt + completion tokens (<= model max)")
    parser.add_argument("--max-tokens-default", type=int, default=256, help="when a request sets no max_tokens")
    parser.add_argument(
        "--warmup",
        action="store_true",
        help="compile the shape buckets of prompts <= --warmup-max-prompt and max_tokens <= "
        "--warmup-max-tokens before serving (every batch-row bucket)",
    )
    parser.add_argument("--warmup-max-prompt", type=int, default=256, help="with --warmup (tokens)")
    parser.add_argument("--warmup-max-tokens", type=int, default=256, help="with --warmup")
    parser.add_argument("--max-body-bytes", type=int, default=4 << 20)
    parser.add_argument("--read-timeout-s", type=float, default=30.0)
    parser.add_argument("--graceful-s", type=float, default=10.0, help="SIGTERM: wait this long for open requests")
    args = parser.parse_args(argv)
    if args.max_batch < 1:
        parser.error(f"--max-batch: expected >= 1, got {args.max_batch}")
    import uvicorn

    from jaxlab.llm.serve import create_app

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    backend = load_backend(args.model, args.max_batch, args.max_model_len, args.served_model_name)
    if args.warmup and hasattr(backend, "engine"):
        n = backend.engine.warmup(max_prompt=args.warmup_max_prompt, max_new_tokens=args.warmup_max_tokens)
        print(f"warm-up: compiled {n} shapes", flush=True)
    app = create_app(
        backend,
        max_body_bytes=args.max_body_bytes,
        read_timeout_s=args.read_timeout_s,
        default_max_tokens=args.max_tokens_default,
    )
    # uvicorn drains requests on SIGTERM, runs the shutdown hook, then re-raises the signal through the
    # previous handler: make that handler a normal exit so supervisors see status 0 for a clean stop
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"serving {backend.name!r} at http://{args.host}:{args.port}/v1 (SIGTERM or Ctrl-C stops)", flush=True)
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level="warning",
        timeout_keep_alive=30,
        timeout_graceful_shutdown=args.graceful_s,
    )
    return 0
