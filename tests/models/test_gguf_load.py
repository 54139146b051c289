"""GGUF in with numpy only: tiny GGUFs written here (and the real SmolLM2 one) give transformers' GGUF logits and ids."""

import json
import subprocess
import sys
from pathlib import Path

import gguf
import numpy as np
import pytest
import torch
import transformers

from jaxlab.models import from_hf
from jaxlab.models.gguf_load import gguf_to_folder, unpermute_qk
from tests.train.tiny_hf import code_tokenizer

ROOT = Path(__file__).resolve().parents[2]
TEXTS = ["def f(x):\n    return x ** 2  # ünï 漢字", "<|im_start|>user\nhi<|im_end|>\n", "  two  spaces 12345"]


def _llama_cpp_permute(w: np.ndarray, n_heads: int) -> np.ndarray:
    """llama.cpp's convert_hf_to_gguf.py ``LlamaModel.permute`` (the direction the file is written in)."""
    return w.reshape(n_heads, 2, w.shape[0] // n_heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def test_unpermute_inverts_llama_cpp():
    rng = np.random.default_rng(0)
    for heads, dim, cols in ((4, 8, 5), (3, 64, 1), (1, 4, 7)):
        w = rng.normal(size=(heads * dim, cols)).astype(np.float32)
        permuted = _llama_cpp_permute(w, heads)
        assert not np.array_equal(permuted, w)
        np.testing.assert_array_equal(unpermute_qk(permuted, heads), w)


def _write_gguf(model, tokenizer, path: Path) -> Path:
    """A GGUF as llama.cpp's converter writes it: llama.cpp names, permuted Llama Q/K, one Q8_0 tensor, BPE vocab."""
    cfg = model.config
    arch = cfg.model_type
    w = gguf.GGUFWriter(str(path), arch)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_rope_freq_base(float(cfg.rope_parameters["rope_theta"]))
    w.add_rope_dimension_count(cfg.hidden_size // cfg.num_attention_heads)
    w.add_vocab_size(cfg.vocab_size)
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])
    special = set(tokenizer.all_special_tokens) | {"<|im_start|>", "<|im_end|>"}
    w.add_tokenizer_model("gpt2")
    if arch == "qwen2":  # as llama.cpp labels Qwen2 vocabularies: split by Qwen2's regex
        w.add_tokenizer_pre("qwen2")
    w.add_token_list([t for t, _ in vocab])
    w.add_token_types([3 if t in special else 1 for t, _ in vocab])
    merges = json.loads(tokenizer.backend_tokenizer.to_str())["model"]["merges"]
    w.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in merges])
    w.add_bos_token_id(tokenizer.convert_tokens_to_ids("<|im_start|>"))
    w.add_eos_token_id(tokenizer.eos_token_id)
    w.add_chat_template(tokenizer.chat_template)
    names = {
        "model.embed_tokens.weight": "token_embd.weight",
        "model.norm.weight": "output_norm.weight",
        "lm_head.weight": "output.weight",
    }
    blocks = {
        "input_layernorm": "attn_norm",
        "post_attention_layernorm": "ffn_norm",
        "self_attn.q_proj": "attn_q",
        "self_attn.k_proj": "attn_k",
        "self_attn.v_proj": "attn_v",
        "self_attn.o_proj": "attn_output",
        "mlp.gate_proj": "ffn_gate",
        "mlp.up_proj": "ffn_up",
        "mlp.down_proj": "ffn_down",
    }
    for name, tensor in model.state_dict().items():
        arr = tensor.numpy().astype(np.float32)
        if name in names:
            gname = names[name]
        else:
            layer, rest = name.removeprefix("model.layers.").split(".", 1)
            module, kind = rest.rsplit(".", 1)
            gname = f"blk.{layer}.{blocks[module]}.{kind}"
        if arch == "llama" and gname.endswith(("attn_q.weight", "attn_k.weight")):
            arr = _llama_cpp_permute(arr, cfg.num_attention_heads if "attn_q" in gname else cfg.num_key_value_heads)
        if gname == "blk.0.ffn_up.weight":  # one quantised tensor: the dequantisation path is exercised too
            w.add_tensor(
                gname,
                gguf.quants.quantize(arr, gguf.GGMLQuantizationType.Q8_0),
                raw_dtype=gguf.GGMLQuantizationType.Q8_0,
            )
        else:
            w.add_tensor(gname, arr)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_tiny_gguf_equals_transformers_gguf_loader(family, tmp_path):
    tok = code_tokenizer()
    config_cls = {"llama": transformers.LlamaConfig, "qwen2": transformers.Qwen2Config}[family]
    cfg = config_cls(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        tie_word_embeddings=False,
        rms_norm_eps=1e-5,
    )
    torch.manual_seed(0)
    source = transformers.AutoModelForCausalLM.from_config(cfg, dtype=torch.float32).eval()
    path = _write_gguf(source, tok, tmp_path / "tiny.gguf")

    folder = gguf_to_folder(path, tmp_path / "hf")
    ours_tok = transformers.AutoTokenizer.from_pretrained(folder)
    ref_tok = transformers.AutoTokenizer.from_pretrained(tmp_path, gguf_file=path.name)
    for text in TEXTS:  # (Qwen2 files are split by Qwen2's own regex, which the source BPE was not trained with)
        assert ours_tok.encode(text) == ref_tok.encode(text)
        assert family != "llama" or ours_tok.encode(text) == tok.encode(text)
    ids = np.asarray([tok.encode(TEXTS[0])])
    ref = transformers.AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file=path.name, dtype=torch.float32)
    with torch.no_grad():
        ref_logits = ref.eval()(torch.tensor(ids)).logits.numpy()
        source_logits = source(torch.tensor(ids)).logits.numpy()
    ours = np.asarray(from_hf(folder)(ids))
    np.testing.assert_allclose(ours, ref_logits, atol=1e-4, rtol=0)
    # only the Q8_0 tensor is lossy: a wrong Q/K order would be far off the source model
    np.testing.assert_allclose(ours, source_logits, atol=2e-2, rtol=0)


def test_conversion_runs_without_torch(tmp_path):
    tok = code_tokenizer()
    cfg = transformers.LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=64,
    )
    torch.manual_seed(0)
    path = _write_gguf(transformers.AutoModelForCausalLM.from_config(cfg).eval(), tok, tmp_path / "t.gguf")
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from jaxlab.models.gguf_load import gguf_to_folder\n"
        f"gguf_to_folder({str(path)!r}, {str(tmp_path / 'hf')!r})\n"
        "assert 'torch' not in sys.modules or sys.modules['torch'] is None\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "hf" / "model.safetensors").is_file() and (tmp_path / "hf" / "tokenizer.json").is_file()


@pytest.mark.slow
def test_smollm2_gguf_equals_transformers_gguf_path(tmp_path):
    from jaxlab.models.smollm2 import smollm2_gguf_path

    path = smollm2_gguf_path()
    folder = gguf_to_folder(path, tmp_path / "hf")
    ours_tok = transformers.AutoTokenizer.from_pretrained(folder)
    ref_tok = transformers.AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    chat = [{"role": "user", "content": "Write a haiku about GGUF."}]
    assert ours_tok.apply_chat_template(chat, add_generation_prompt=True) == ref_tok.apply_chat_template(
        chat, add_generation_prompt=True
    )
    for text in TEXTS:
        assert ours_tok.encode(text) == ref_tok.encode(text)
    assert ours_tok.eos_token == ref_tok.eos_token == "<|im_end|>"
    ref = transformers.AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    ids = np.asarray([ref_tok.encode(TEXTS[0])])
    with torch.no_grad():
        ref_logits = ref.eval()(torch.tensor(ids)).logits.numpy()
    del ref
    np.testing.assert_allclose(np.asarray(from_hf(folder)(ids)), ref_logits, atol=2e-3, rtol=0)
