"""Held-out problems never appear in a training stream: imitation problems, self-play, GRPO (problems.py)."""

import jax
import numpy as np
import pytest

from jaxrl_reason.config import load_config
from jaxrl_reason.envs.registry import make
from jaxrl_reason.problems import heldout_problems, problem_key, run_problems, stream_init
from jaxrl_reason.training.loop import train
from tests.test_train import restored_state, tiny_config

CONFIGS = ["configs/default.py", "configs/countdown.py", "configs/grpo_addition.py", "configs/grpo_countdown.py"]


def _dicts(env, problems) -> list[str]:
    n = jax.tree.leaves(problems)[0].shape[0]
    return [problem_key(env.problem_to_dict(jax.tree.map(lambda x, i=i: x[i], problems))) for i in range(n)]


def _stream_problems(env, init, keys) -> list[str]:
    return _dicts(env, jax.jit(jax.vmap(init))(keys).problem)


@pytest.mark.parametrize("path", CONFIGS)
def test_imitation_problems_exclude_the_heldout_set(path):
    config = load_config(path)
    env = make(config.env_id, **dict(config.env_kwargs))
    train_set, heldout = run_problems(env, config)
    assert heldout == heldout_problems(env, config)
    assert len(heldout) == config.eval.num_problems and len(train_set) == config.sft.num_examples
    assert not {problem_key(d) for d in train_set} & {problem_key(d) for d in heldout}


@pytest.mark.parametrize("path", CONFIGS)
def test_stream_init_never_draws_a_heldout_problem(path):
    config = load_config(path)
    env = make(config.env_id, **dict(config.env_kwargs))
    keys = jax.random.split(jax.random.PRNGKey(7), 1024)
    plain = _stream_problems(env, env.init, keys)
    # held out: the config's own set plus the first 64 problems env.init draws from these keys (so the
    # plain stream certainly hits the held-out set and the test can fail)
    heldout = heldout_problems(env, config)
    forced = jax.vmap(env.sample_problem)(keys[:64])
    heldout_keys = {problem_key(d) for d in heldout} | set(_dicts(env, forced))
    extra = [d for d in (env.problem_to_dict(jax.tree.map(lambda x, i=i: x[i], forced)) for i in range(64))]
    guarded = _stream_problems(env, stream_init(env, heldout + extra), keys)
    assert sum(p in heldout_keys for p in plain) >= 64
    assert not any(p in heldout_keys for p in guarded)
    # rows whose first draw was fine are unchanged: the guard only redraws held-out problems
    same = [g == p for g, p in zip(guarded, plain, strict=True) if p not in heldout_keys]
    assert all(same) and len(same) > 500


def test_stream_init_refuses_a_heldout_set_covering_most_problems():
    env = make("addition-v0", num_digits=1)
    everything = [{"a": a, "b": b} for a in range(10) for b in range(10)]
    with pytest.raises(ValueError, match="held-out problems are"):
        stream_init(env, everything[:80])


@pytest.mark.parametrize("algorithm", ["alphazero", "grpo"])
def test_a_run_never_trains_on_its_heldout_problems(tmp_path, algorithm):
    # 1-digit addition: 100 problems, 40 held out, so unguarded self-play/RL batches would contain many
    config = tiny_config(algorithm=algorithm, total_steps=12, sft__steps=2, eval_every=12, checkpoint_every=12)
    config.eval.num_problems = 40
    config.selfplay.num_episodes = 32
    config.rl.num_problems = 16
    config.rl.group_size = 2
    train(config, str(tmp_path), progress=False)
    env = make(config.env_id, **dict(config.env_kwargs))
    buf = restored_state(config, tmp_path).buffer
    prompts = {tuple(t[: int(n)]) for t, n in zip(np.asarray(buf["tokens"]), buf["prompt_length"], strict=True)}
    heldout_states = jax.vmap(env.init_from_problem)(
        jax.tree.map(lambda *x: np.stack(x), *[env.problem_from_dict(d) for d in heldout_problems(env, config)])
    )
    held = {
        tuple(t[: int(n)]) for t, n in zip(np.asarray(heldout_states.tokens), heldout_states.prompt_length, strict=True)
    }
    assert len(prompts) > 5  # the buffer holds real episodes
    assert not prompts & held
