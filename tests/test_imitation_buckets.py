"""Length-bucketed SFT batches: one bucket per batch, trimmed to its width, deterministic, and the same loss."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrl_reason as jr
from jaxrl_reason.algorithms.sft import sft_loss
from jaxrl_reason.config import ConfigError, base_config, validate
from jaxrl_reason.models import PolicyValueTransformer, TransformerConfig
from jaxrl_reason.problems import demonstration_set, run_problem_sets
from jaxrl_reason.training.imitation import sft_batch


def _data(n=96, seed=0):
    env = jr.make("countdown-v0", num_numbers=3, demo_style="backward")
    return env, demonstration_set(env, run_problem_sets(env, seed, n, 1)[0])


def test_each_batch_is_one_bucket_trimmed_to_its_width():
    env, data = _data()
    widths, full = (60, 100), data["tokens"].shape[1]
    lengths = data["length"]
    edges = np.array([60, 100, full])
    bucket_of = np.searchsorted(edges, lengths)
    per_epoch = sum(int((bucket_of == b).sum()) // 8 for b in range(3))
    seen = []
    for step in range(per_epoch):
        batch = sft_batch(data, step, 8, seed=3, bucket_widths=widths)
        width = batch["tokens"].shape[1]
        assert width in (60, 100, full) and batch["tokens"].shape[0] == 8
        assert (batch["length"] <= width).all()
        narrower = edges[edges < width]
        assert narrower.size == 0 or (batch["length"] > narrower.max()).all()  # not a narrower bucket's example
        # the rows are the data's rows, cut at the width (only padding is cut)
        rows = [int(np.flatnonzero((data["tokens"] == t_row_full).all(1))[0]) for t_row_full in _pad(batch, full)]
        seen += rows
    assert len(seen) == len(set(seen))  # an epoch draws each example at most once
    assert len(seen) == per_epoch * 8
    again = sft_batch(data, 5, 8, seed=3, bucket_widths=widths)
    assert all(np.array_equal(again[k], sft_batch(data, 5, 8, seed=3, bucket_widths=widths)[k]) for k in again)


def _pad(batch, full):
    t = batch["tokens"]
    return np.pad(t, ((0, 0), (0, full - t.shape[1])))


def test_trimming_leaves_the_loss_unchanged():
    env, data = _data(32)
    model = PolicyValueTransformer(TransformerConfig.for_env(env.spec))
    params = model.init(jax.random.PRNGKey(0))
    full = {k: v[:16] for k, v in data.items()}
    width = int(full["length"].max())
    assert width < full["tokens"].shape[1]

    def loss(tokens):
        logits, _ = model.apply(params, jnp.asarray(tokens))
        return sft_loss(logits, jnp.asarray(tokens), full["prompt_length"], full["length"])[0]

    np.testing.assert_allclose(loss(full["tokens"][:, :width]), loss(full["tokens"]), rtol=1e-5)


def test_bucket_widths_are_validated():
    _, data = _data(16)
    with pytest.raises(ValueError, match="whole batch"):
        sft_batch(data, 0, 64, seed=0, bucket_widths=(40,))
    c = base_config()
    c.sft.bucket_widths = (100, 60)
    with pytest.raises(ConfigError, match="increasing"):
        validate(c)
    c.sft.bucket_widths = (1,)
    with pytest.raises(ConfigError, match=">= 2"):
        validate(c)


def test_a_teacher_that_gives_up_demonstrates_only_the_short_problems():
    from jaxrl_reason.training.imitation import imitation_data

    env = jr.make("countdown-v0", num_numbers=3, demo_style="backward")
    problems = run_problem_sets(env, 0, 64, 1)[0]
    lengths = [len(env.tokenizer.encode(env.demonstration(d))) for d in problems]
    cap = sorted(lengths)[40]  # between the shortest and the longest
    config = base_config()
    config.sft.demo_max_tokens = cap
    data = imitation_data(config, env, None, problems)
    short = [d for d, n in zip(problems, lengths, strict=True) if n <= cap]
    assert 40 <= len(short) < 64
    np.testing.assert_array_equal(data["tokens"], demonstration_set(env, short)["tokens"])  # the same rows, in order
    assert (data["length"] - data["prompt_length"] - 1 <= cap).all()  # demonstration + EOS
    config.sft.demo_max_tokens = 1
    with pytest.raises(ValueError, match="sft.demo_max_tokens=1"):
        imitation_data(config, env, None, problems)
    config.sft.demo_max_tokens = -1
    with pytest.raises(ConfigError, match="sft.demo_max_tokens"):
        validate(config)
