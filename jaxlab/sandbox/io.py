"""Bounded I/O with a sandboxed child: nothing here can block past the caller's deadline or grow without bound."""

from __future__ import annotations

import json
import os
from typing import IO, Any, Callable

MAX_RPC_MESSAGE = 1 << 20  # one request line from the child
MAX_RPC_TOTAL = 64 << 20  # all requests of one run


def drain(stream: IO[bytes], sink: list[bytes], cap: int) -> None:
    """Read ``stream`` to EOF keeping at most ``cap`` bytes (the rest is counted, not stored)."""
    size = 0
    for chunk in iter(lambda: stream.read(65536), b""):
        if size < cap:
            sink.append(chunk[: cap - size])
        size += len(chunk)
    if size > cap:
        sink.append(f"\n[sandbox: output truncated, {size - cap} more bytes]".encode())


def write_stdin(stream: IO[bytes], data: bytes) -> None:
    """Feed stdin from a thread so a child that never reads it cannot block the caller."""
    try:
        stream.write(data)
        stream.close()
    except (BrokenPipeError, OSError, ValueError):
        pass


def serve_rpc(read_fd: int, write_fd: int, handler: Callable[[str, dict], Any]) -> None:
    """Answer the child's JSON-line requests; an oversized line or too much traffic ends the channel."""
    total = 0
    with os.fdopen(read_fd, "rb") as rin, os.fdopen(write_fd, "w") as rout:
        while True:
            line = rin.readline(MAX_RPC_MESSAGE + 1)
            total += len(line)
            if not line:
                return
            if len(line) > MAX_RPC_MESSAGE or total > MAX_RPC_TOTAL:
                try:
                    rout.write(
                        json.dumps(
                            {
                                "error": f"sandbox: rpc traffic over its cap ({MAX_RPC_MESSAGE} "
                                f"bytes a message, {MAX_RPC_TOTAL} a run)"
                            }
                        )
                        + "\n"
                    )
                    rout.flush()
                except (BrokenPipeError, OSError):
                    pass
                return
            try:
                msg = json.loads(line)
                reply = {"result": handler(msg["method"], msg.get("params") or {})}
            except Exception as exc:  # the child sees the error; the parent keeps going
                reply = {"error": f"{type(exc).__name__}: {exc}"}
            try:
                rout.write(json.dumps(reply) + "\n")
                rout.flush()
            except (BrokenPipeError, OSError):
                return
