"""``model.attention`` kernels (splash in Pallas interpret mode, the cuDNN call's structure through XLA,
dot_product) equal a plain reference on random inputs, forward and backward, for every mask they support."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlab.models.attention import (
    AttentionMask,
    attend,
    check_backend,
    fused_attention,
    segment_positions,
    splash_attention,
)

B, S, H, KV, D = 2, 40, 4, 2, 16  # S is not a multiple of 128: splash pads and cuts back


def reference(q, k, v, mask, sinks=None):
    """Dense attention with repeated kv heads and an explicit softmax (finite mask value: empty rows stay finite)."""
    groups = q.shape[2] // k.shape[2]
    k, v = jnp.repeat(k, groups, axis=2), jnp.repeat(v, groups, axis=2)
    scores = jnp.einsum("bshd,bthd->bhst", q, k) / np.sqrt(q.shape[-1])
    scores = jnp.where(mask[:, None], scores, -1e30)
    if sinks is not None:
        scores = jnp.concatenate([scores, jnp.broadcast_to(sinks[None, :, None, None], scores.shape[:-1] + (1,))], -1)
    probs = jax.nn.softmax(scores, axis=-1)
    if sinks is not None:
        probs = probs[..., :-1]
    return jnp.einsum("bhst,bthd->bshd", probs, v)


def _qkv(seed=0, s=S):
    kq, kk, kv = jax.random.split(jax.random.key(seed), 3)
    return (
        jax.random.normal(kq, (B, s, H, D)),
        jax.random.normal(kk, (B, s, KV, D)),
        jax.random.normal(kv, (B, s, KV, D)),
    )


def _masks():
    valid = np.ones((B, S), bool)
    valid[0, :5] = False  # left padding
    valid[1, 31:] = False  # right padding
    seg = np.zeros((B, S), np.int32)
    seg[0, :12], seg[0, 12:30], seg[0, 30:37] = 1, 2, 3  # three documents, then padding
    seg[1, :S] = 1
    seg[1, 25:] = 2
    return {
        "causal": (AttentionMask.causal(S), np.ones((B, S), bool)),
        "padding": (AttentionMask.causal(S, jnp.asarray(valid)), valid),
        "window": (AttentionMask.causal(S, jnp.asarray(valid)).with_window(7), valid),
        "segments": (AttentionMask.causal(S, jnp.asarray(seg != 0), jnp.asarray(seg)), seg != 0),
        "segments+window": (AttentionMask.causal(S, jnp.asarray(seg != 0), jnp.asarray(seg)).with_window(5), seg != 0),
    }


def _check(kernel, mask, rows, sinks=None, atol=2e-5):
    """Forward on the real query rows and gradients of a random projection of them, against the reference."""
    q, k, v = _qkv()
    ct = jax.random.normal(jax.random.key(9), q.shape) * jnp.asarray(rows)[:, :, None, None]
    dense = mask.dense()
    want = reference(q, k, v, dense, sinks)
    got = kernel(q, k, v, mask, sinks)
    np.testing.assert_allclose(np.asarray(got)[rows], np.asarray(want)[rows], rtol=0, atol=atol)
    args = (q, k, v) if sinks is None else (q, k, v, sinks)

    def loss(fn):
        def f(*a):
            return jnp.sum(fn(*a[:3], mask if fn is kernel else dense, *a[3:]) * ct)

        return jax.grad(f, argnums=tuple(range(len(args))))(*args)

    for g, w in zip(loss(kernel), loss(reference)):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=0, atol=10 * atol)


def _splash(q, k, v, mask, sinks=None):
    return splash_attention(q, k, v, mask, sinks, interpret=True)


def _cudnn_structure_via_xla(q, k, v, mask, sinks=None):
    assert sinks is None
    return fused_attention(q, k, v, mask, implementation=None)


def _dot_product(q, k, v, mask, sinks=None):
    assert sinks is None
    return attend("dot_product", q, k, v, mask)


@pytest.mark.parametrize("name", list(_masks()))
def test_splash_equals_reference(name):
    mask, rows = _masks()[name]
    _check(_splash, mask, rows)


def test_splash_with_sinks_equals_reference():
    mask, rows = _masks()["window"]
    _check(_splash, mask, rows, sinks=jax.random.normal(jax.random.key(3), (H,)))


@pytest.mark.parametrize("kernel", [_cudnn_structure_via_xla, _dot_product], ids=["cudnn-call", "dot_product"])
@pytest.mark.parametrize("name", list(_masks()))
def test_dense_kernels_equal_reference(kernel, name):
    mask, rows = _masks()[name]
    _check(kernel, mask, rows)


def test_splash_under_a_mesh_runs_per_shard_and_equals_one_device():
    from jaxlab.sharding import MeshConfig, activation_sharding, make_mesh

    mesh = make_mesh(MeshConfig(data=2, fsdp=2, tensor=2))
    q, k, v = _qkv(seed=4)
    mask, _ = _masks()["segments"]
    sinks = jax.random.normal(jax.random.key(5), (H,))
    want = _splash(q, k, v, mask, sinks)
    fn = jax.jit(lambda *a: _splash(*a, mask, sinks))
    with activation_sharding(mesh):
        assert "shard_map" in str(jax.make_jaxpr(fn)(q, k, v))
        got = fn(q, k, v)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=0, atol=1e-6)


def test_backend_errors_name_the_field():
    with pytest.raises(ValueError, match=r"model.attention='cudnn' needs an NVIDIA GPU.*'cpu'"):
        check_backend("cudnn", "cpu")
    with pytest.raises(ValueError, match=r"model.attention='splash' is a TPU kernel"):
        check_backend("splash", "gpu")
    check_backend("splash", "cpu")  # interpret mode
    check_backend("cudnn", "gpu")
    q, k, v = _qkv()
    with pytest.raises(ValueError, match="model.attention='cudnn' needs an NVIDIA GPU"):
        attend("cudnn", q.astype(jnp.bfloat16), k.astype(jnp.bfloat16), v.astype(jnp.bfloat16), AttentionMask.causal(S))


def test_segment_positions_restart_per_document():
    seg = jnp.asarray([[1, 1, 1, 2, 2, 3, 0, 0], [1, 1, 1, 1, 1, 1, 1, 1]])
    want = [[0, 1, 2, 0, 1, 0, 0, 1], list(range(8))]
    assert segment_positions(seg).tolist() == want
