"""Env-written tokens in the training loops (#19): what GRPO, STaR and AlphaZero store for their losses on a tool
env, checked against replaying each stored response through the env by hand; other envs keep their layout."""

import functools

import jax
import numpy as np
import pytest

from jaxrl_reason.envs.registry import make
from jaxrl_reason.problems import run_problems
from jaxrl_reason.training.imitation import imitation_data, sft_batch
from jaxrl_reason.training.loop import train
from jaxrl_reason.training.state import build_model, build_optimizer, init_state
from tests.test_train import fresh_train_fns, restored_state, tiny_config


def _tool_config(algorithm, **changes):
    c = tiny_config(algorithm=algorithm, **changes)
    c.env_id = "multiply-v0"
    c.env_kwargs.multiplier_digits = 1
    c.env_kwargs.tools = ("calc",)
    c.rl.num_problems, c.rl.group_size, c.rl.updates_per_batch = 8, 4, 1
    c.rl.temperature = 2.0  # a random policy then calls the tool often
    return c


def _collected(config):
    env, _, fns, state = fresh_train_fns(config)
    state, _ = fns.collect(state)
    return env, fns, jax.device_get(state), state


@functools.cache
def _jitted_step(env):
    return jax.jit(env.step)  # one compile per env, not per replayed row


def _replay(env, tokens, p0):
    """The final state of stepping `env` by hand through the response in `tokens` (from position `p0`)."""
    a, b = env.tokenizer.decode([int(t) for t in tokens[1:p0]]).rstrip("=").split("*")
    state = env.init_from_problem(env.problem_from_dict({"a": int(a), "b": int(b)}))
    step = _jitted_step(env)
    while not bool(state.done):
        state = step(state, int(tokens[int(state.length)]))
    np.testing.assert_array_equal(np.asarray(state.tokens), tokens)
    return state


def test_grpo_batch_counts_only_the_tokens_the_policy_chose():
    env, _, state, _ = _collected(_tool_config("grpo"))
    buf = state.buffer
    assert set(buf) == {"tokens", "prompt_length", "actions", "valid", "log_probs", "advantages"}  # layout kept
    skipped = 0
    for i in range(buf["tokens"].shape[0]):
        p0 = int(buf["prompt_length"][i])
        final = _replay(env, buf["tokens"][i], p0)
        t = np.arange(buf["valid"].shape[1])
        written = np.asarray(env.written_mask(final))[np.minimum(p0 + t, len(final.tokens) - 1)]
        live = t < int(final.length) - p0
        np.testing.assert_array_equal(buf["valid"][i], live & ~written)
        skipped += (live & written).sum()
    assert skipped >= 4


def test_star_batch_stores_the_env_written_tokens_and_restores_from_a_checkpoint(tmp_path):
    config = _tool_config("star", total_steps=4, sft__steps=2, checkpoint_every=4, eval_every=4)
    train(config, str(tmp_path), progress=False)  # SFT on tool demonstrations, then STaR
    buf = restored_state(config, tmp_path).buffer
    env = make(config.env_id, **dict(config.env_kwargs))
    assert "written" in buf
    for i in range(buf["tokens"].shape[0]):
        final = _replay(env, buf["tokens"][i], int(buf["prompt_length"][i]))
        np.testing.assert_array_equal(buf["written"][i], np.asarray(env.written_mask(final)))
    assert buf["written"].sum() >= 4


def test_alphazero_replay_marks_forced_steps_whose_search_policy_is_the_forced_token():
    config = _tool_config("alphazero", sft__steps=0, selfplay__num_episodes=32, selfplay__temperature=2.0)
    _, fns, host, state = _collected(config)
    buf = host.buffer
    written, valid = buf["env_written"], buf["valid"]
    assert not (written & ~valid).any() and written.sum() >= 2
    pi = buf["policy"][written]  # [n, A]: one-hot on the forced token, which was played
    np.testing.assert_array_equal(pi.max(-1), 1.0)
    np.testing.assert_array_equal(pi.argmax(-1), buf["actions"][written])
    _, metrics = fns.update(state)
    assert np.isfinite(float(metrics["loss"]))


def test_imitation_data_of_a_tool_env_marks_the_answers_and_buckets_trim_them():
    config = _tool_config("none")
    env = make(config.env_id, **dict(config.env_kwargs))
    dicts = run_problems(env, config)[0][:16]
    data = imitation_data(config, env, build_model(config, env), dicts)
    tok = env.tokenizer
    for i in range(4):
        text = tok.decode(data["tokens"][i][data["written"][i]])
        assert text == "".join(f"{r}]" for _, r in env.task.solution_steps(dicts[i]))
    width = int(data["length"].max())
    batch = sft_batch(data, 0, 4, seed=0, bucket_widths=(width,))
    assert batch["written"].shape == batch["tokens"].shape == (4, width)


@pytest.mark.parametrize("algorithm", ["alphazero", "grpo", "star", "none"])
def test_envs_that_write_nothing_and_imitation_runs_keep_their_buffer_layout(algorithm):
    config = tiny_config(algorithm=algorithm)
    env = make(config.env_id, **dict(config.env_kwargs))
    buf = init_state(config, env, build_model(config, env), build_optimizer(config)).buffer
    assert "written" not in buf and "env_written" not in buf
    tool = _tool_config(algorithm)  # an imitation-only run on a tool env stores nothing: no new key either
    env = make(tool.env_id, **dict(tool.env_kwargs))
    buf = jax.eval_shape(lambda: init_state(tool, env, build_model(tool, env), build_optimizer(tool))).buffer
    assert ("env_written" in buf) == (algorithm == "alphazero") and ("written" in buf) == (algorithm == "star")
