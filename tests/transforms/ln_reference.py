"""Slow float64 numpy reference for the language-neuron tests: one sample at a time, real tokens only.

It re-implements the dense decoder (RMSNorm, q/k norm, q/k/v biases, RoPE,
GQA causal attention with an optional sliding window, SwiGLU) from the raw
parameter arrays, with explicit loops for the PLND q/k score, so it shares no
code with ``jaxlab.transforms.neuron_stats``. ``zero`` deactivates units the
way the papers describe it (a neuron's activation, a q/k/v/o dimension set to 0).
"""

import numpy as np
from flax import nnx


def flat_params(model):
    return {tuple(p): np.asarray(v[...], np.float64) for p, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}


def _rms(x, scale, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * scale


def _rope(x, theta):
    n, _, d = x.shape
    inv = 1.0 / theta ** (np.arange(0, d, 2) / d)
    ang = np.arange(n)[:, None] * inv[None]
    cos, sin = np.cos(np.concatenate([ang, ang], -1))[:, None], np.sin(np.concatenate([ang, ang], -1))[:, None]
    rot = np.concatenate([-x[..., d // 2 :], x[..., : d // 2]], -1)
    return x * cos + rot * sin


def _softmax_rows(logits, allowed):
    z = np.where(allowed, logits, -np.inf)
    z = z - z.max(-1, keepdims=True)
    e = np.where(allowed, np.exp(z), 0.0)
    return e / e.sum(-1, keepdims=True)


def reference(model, ids, zero=None):
    """``(logits [n, V], stats)`` for one sample ``ids [n]``; stats per layer as in ``batch_neuron_stats``.

    ``zero``: optional ``{"ffn": [L, F], "q": [L, H*D], "k": [L, KV*D], "v": [L, KV*D], "o": [L, H*D]}`` bools.
    """
    cfg, p = model.config, flat_params(model)
    H, KV, D, eps = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim, cfg.rms_norm_eps
    n = len(ids)
    h = p[("embed", "embedding")][np.asarray(ids)]
    stats = {k: [] for k in ("ffn_importance", "act_count", "qk_score", "vo_score")}
    for i in range(cfg.num_layers):
        g = lambda *k: p.get(("layers", i) + k)  # noqa: E731
        x = _rms(h, g("attn_norm", "scale"), eps)
        proj = {}
        for name, heads in (("q", H), ("k", KV), ("v", KV)):
            y = x @ g("attn", f"{name}_proj", "kernel")
            if g("attn", f"{name}_proj", "bias") is not None:
                y = y + g("attn", f"{name}_proj", "bias")
            if zero is not None:
                y = y * ~zero[name][i]
            proj[name] = y.reshape(n, heads, D)
        q, k, v = proj["q"], proj["k"], proj["v"]
        if cfg.qk_norm:
            q, k = _rms(q, g("attn", "q_norm", "scale"), eps), _rms(k, g("attn", "k_norm", "scale"), eps)
        q, k = _rope(q, cfg.rope_theta), _rope(k, cfg.rope_theta)
        allowed = np.tril(np.ones((n, n), bool))
        window = cfg.layer_window[i]
        if window is not None:
            allowed &= (np.arange(n)[:, None] - np.arange(n)[None, :]) < window
        heads_out = np.zeros((n, H, D))
        qk = np.zeros((H, D))
        for hh in range(H):
            kh, vh = k[:, hh // (H // KV)], v[:, hh // (H // KV)]
            logits = q[:, hh] @ kh.T / np.sqrt(D)
            probs = _softmax_rows(logits, allowed)
            heads_out[:, hh] = probs @ vh
            for d in range(D):
                without = logits - np.outer(q[:, hh, d], kh[:, d]) / np.sqrt(D)
                qk[hh, d] = np.sum((_softmax_rows(without, allowed) - probs) ** 2)
        stats["qk_score"].append(qk.reshape(-1))
        flat = heads_out.reshape(n, H * D)
        stats["vo_score"].append(np.abs(flat).sum(0))
        if zero is not None:
            flat = flat * ~zero["o"][i]
        h = h + flat @ g("attn", "o_proj", "kernel")
        x = _rms(h, g("mlp_norm", "scale"), eps)
        gate, up = x @ g("mlp", "gate_proj", "kernel"), x @ g("mlp", "up_proj", "kernel")
        silu = gate / (1.0 + np.exp(-gate))
        stats["ffn_importance"].append(np.abs(up).sum(0))
        stats["act_count"].append((silu > 0).sum(0))
        act = silu * up
        if zero is not None:
            act = act * ~zero["ffn"][i]
        h = h + act @ g("mlp", "down_proj", "kernel")
    h = _rms(h, p[("final_norm", "scale")], eps)
    head = p[("lm_head", "kernel")] if ("lm_head", "kernel") in p else p[("embed", "embedding")].T
    return h @ head, {key: np.stack(rows) for key, rows in stats.items()}
