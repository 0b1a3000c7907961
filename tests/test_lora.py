"""LoRA adapters: a fresh adapter is the base model, only adapters train, merging is the adapted forward."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxrl_reason as jr
from jaxrl_reason.config import base_config
from jaxrl_reason.models import merge_lora, param_labels
from jaxrl_reason.training.loop import make_apply_grads
from jaxrl_reason.training.state import TrainState, build_optimizer

BASE = jr.TransformerConfig(num_actions=40, vocab_size=40, max_length=16, d_model=32, num_heads=4, num_kv_heads=2,
                            num_layers=2, mlp_dim=48, mlp="swiglu", qkv_bias=True)  # fmt: skip
LORA = dataclasses.replace(BASE, lora_rank=4, lora_alpha=8.0)
TOKENS = jax.random.randint(jax.random.PRNGKey(5), (2, 9), 0, 40)


def _apply(config, params):
    return jax.jit(jr.PolicyValueTransformer(config).apply)(params, TOKENS)


def _strip(params):
    return {k: {n: w for n, w in v.items() if not n.startswith("lora_")} if isinstance(v, dict) else v
            for k, v in params.items()}  # fmt: skip


def _perturbed(params, key):
    """Every adapter B drawn at random (a trained adapter), so that the adapters change the forward."""
    leaves, tree = jax.tree_util.tree_flatten_with_path(params)
    keys = jax.random.split(key, len(leaves))
    out = [0.1 * jax.random.normal(k, x.shape) if str(p[-1].key).endswith("_b") else x
           for (p, x), k in zip(leaves, keys, strict=True)]  # fmt: skip
    return jax.tree_util.tree_unflatten(tree, out)


def test_fresh_adapters_give_the_base_models_outputs_exactly():
    params = jr.PolicyValueTransformer(LORA).init(jax.random.PRNGKey(0))
    layer = params["layer_0"]
    assert {"lora_q_a", "lora_q_b", "lora_kv_a", "lora_attn_out_a", "lora_mlp_gate_b", "lora_mlp_out_b"} <= set(layer)
    assert layer["lora_q_a"].shape == (32, 4) and layer["lora_q_b"].shape == (4, 4, 8)
    assert layer["lora_attn_out_a"].shape == (4, 8, 4) and layer["lora_attn_out_b"].shape == (4, 32)
    base = _strip(params)
    logits, values = _apply(LORA, params)
    ref_logits, ref_values = _apply(BASE, base)
    np.testing.assert_array_equal(logits, ref_logits)
    np.testing.assert_array_equal(values, ref_values)
    # the base params are those of the plain model from the same key: adapters are declared after them
    for x, y in zip(jax.tree.leaves(base), jax.tree.leaves(jr.PolicyValueTransformer(BASE).init(jax.random.PRNGKey(0))),
                    strict=True):  # fmt: skip
        np.testing.assert_array_equal(x, y)


def test_merge_equals_the_adapted_forward_and_save_pretrained_writes_it(tmp_path):
    params = _perturbed(jr.PolicyValueTransformer(LORA).init(jax.random.PRNGKey(0)), jax.random.PRNGKey(1))
    logits, values = _apply(LORA, params)
    merged, config = merge_lora(params, LORA)
    assert config == BASE and jax.tree.structure(merged) == jax.tree.structure(_strip(params))
    m_logits, m_values = _apply(config, merged)
    np.testing.assert_array_equal(m_logits, logits)
    np.testing.assert_array_equal(m_values, values)
    base_logits, _ = _apply(BASE, _strip(params))
    assert np.abs(np.asarray(base_logits) - np.asarray(logits)).max() > 1e-3  # the adapters do change it
    jr.save_pretrained(params, LORA, str(tmp_path))
    model, loaded = jr.load_pretrained(str(tmp_path), max_length=16)
    assert model.config.lora_rank == 0
    np.testing.assert_allclose(_apply(model.config, loaded)[0], logits, rtol=1e-5, atol=1e-5)


def _config():
    c = base_config()
    c.model.lora_rank = 4
    c.optim.warmup_steps = 0
    return c


def test_only_adapters_and_the_value_head_train():
    model = jr.PolicyValueTransformer(LORA)
    params = _perturbed(model.init(jax.random.PRNGKey(0)), jax.random.PRNGKey(1))
    tx = build_optimizer(_config())
    opt_state = tx.init(params)
    labels = param_labels(params)
    n_adapter = sum(x.size for x, lab in zip(jax.tree.leaves(params), jax.tree.leaves(labels), strict=True)
                    if lab == "adapter")  # fmt: skip
    adam_sizes = sum(x.size for x in jax.tree.leaves(opt_state) if x.ndim > 0)
    assert adam_sizes == 2 * n_adapter < model.num_params()  # Adam's mu and nu of the adapters only

    def loss_fn(p):
        logits, values = model.apply(p, TOKENS)  # traced inside the jitted step below
        return jnp.mean(jax.nn.log_softmax(logits)[..., 3]) + jnp.mean(values), {}

    state = TrainState(params, opt_state, jnp.int32(0), jax.random.PRNGKey(0), {}, jnp.int32(0))
    new, _ = jax.jit(lambda s: make_apply_grads(tx)(s, loss_fn))(state)
    changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), params, new.params)
    for (path, moved), lab in zip(jax.tree_util.tree_flatten_with_path(changed)[0], jax.tree.leaves(labels),
                                  strict=True):  # fmt: skip
        assert moved == (lab == "adapter"), (path, lab)
    grads = jax.jit(jax.grad(lambda p: loss_fn(p)[0]))(params)
    assert float(optax.tree.norm(grads["layer_0"]["mlp_in"])) > 0  # the base has gradients; they are dropped


def test_lora_config_errors():
    with pytest.raises(ValueError, match="lora_targets among"):
        dataclasses.replace(BASE, lora_rank=2, lora_targets=("qkv", "embed"))
    with pytest.raises(ValueError, match="lora_rank >= 0"):
        dataclasses.replace(BASE, lora_rank=-1)


def test_a_lora_run_trains_only_its_adapters_and_reloads(tmp_path):
    from jaxrl_reason.training.loop import train
    from tests.test_train import tiny_config

    config = tiny_config(algorithm="none", total_steps=2, sft__steps=2, checkpoint_every=1, eval_every=2)
    config.model.lora_rank = 2
    train(config, str(tmp_path), progress=False)
    one, two = jr.Agent.load(str(tmp_path), step=1), jr.Agent.load(str(tmp_path), step=2)
    assert two.model.config.lora_rank == 2
    # the update between the two checkpoints changed every adapter and nothing frozen (SFT gives the value bias
    # no gradient: only the value head's weights, by weight decay, may move besides the adapters)
    labels = param_labels(two.params)
    moved = jax.tree.map(lambda a, b: not np.array_equal(np.asarray(a), np.asarray(b)), one.params, two.params)
    for (path, m), lab in zip(jax.tree_util.tree_flatten_with_path(moved)[0], jax.tree.leaves(labels), strict=True):
        if str(path[-1].key).startswith("lora_"):
            assert m, path  # every adapter trained
        elif lab == "frozen":
            assert not m, path  # the base did not move
    assert any(jax.tree.leaves(moved)) and sum(lab == "frozen" for lab in jax.tree.leaves(labels)) == 9
