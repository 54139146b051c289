"""The real thing: ``jaxlab serve smollm2`` in a subprocess, queried over HTTP on 127.0.0.1."""
import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from jaxlab.llm import user
from jaxlab.llm.http import OpenAIHTTPClient

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_ready(url: str, proc: subprocess.Popen, timeout: float = 240.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"jaxlab serve exited early:\n{proc.stdout.read()}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(1.0)
    raise TimeoutError("jaxlab serve did not come up")


def test_http_client_round_trip_to_jaxlab_serve_smollm2():
    port = _free_port()
    env = {**os.environ, "XLA_FLAGS": ""}
    proc = subprocess.Popen([sys.executable, "-m", "jaxlab.cli", "serve", "smollm2", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        base = f"http://127.0.0.1:{port}/v1"
        _wait_ready(base + "/models", proc)
        client = OpenAIHTTPClient("smollm2", base_url=base, api_key="none", max_retries=0, timeout_s=240)
        first = client.chat(user("What is the capital of France? Answer in one word."), max_tokens=8,
                            temperature=0.0)
        again = client.chat(user("What is the capital of France? Answer in one word."), max_tokens=8,
                            temperature=0.0)
        assert first.text.strip() and first.text == again.text  # greedy is deterministic across requests
        assert "paris" in first.text.lower()
        assert first.usage.prompt_tokens > 10 and 0 < first.usage.completion_tokens <= 8
        assert first.finish_reason in ("stop", "length")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
