"""One ``jaxlab serve`` on a tiny random model for the serve tests (compiled once per session).

The model is random (fast to compile) but the tokenizer and chat template are
SmolLM2's, so prompts, normalisation, grammars and token streaming are the real path.
"""

import openai
import pytest

from jaxlab.llm.backends import EngineBackend
from jaxlab.llm.engine import BatchEngine
from jaxlab.llm.serve import BackgroundServer

HI = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="session")
def served():
    from jaxlab.models import init_model, tiny_config
    from jaxlab.models.smollm2 import load_tokenizer

    tok = load_tokenizer()
    model = init_model(
        tiny_config(
            "llama",
            vocab_size=len(tok),
            hidden_size=32,
            intermediate_size=64,
            num_layers=2,
            num_heads=2,
            num_kv_heads=1,
            max_position_embeddings=512,
        ),
        seed=0,
    )
    engine = BatchEngine(model, tok, max_batch=4, max_model_len=512, batch_wait_s=0.05)
    with BackgroundServer(EngineBackend(engine, "tiny"), read_timeout_s=1.0, max_body_bytes=64 << 10) as srv:
        client = openai.OpenAI(base_url=srv.base_url, api_key="none", max_retries=0, timeout=120)
        client.chat.completions.create(model="tiny", messages=HI, max_tokens=2)  # compile (1, 64, 256)
        yield srv, client, engine
