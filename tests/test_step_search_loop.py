"""Step-level self-play (algorithm="step_search"): it stores exactly the episodes jr.decode's step MCTS plays on
its problems, keeps the verified ones (or all), and its update imitates them."""

import jax
import numpy as np
import pytest

from jaxrl_reason.algorithms.star import star_loss
from jaxrl_reason.config import ConfigError, validate
from jaxrl_reason.envs.registry import make
from jaxrl_reason.problems import initial_states
from jaxrl_reason.search.decoding import decode
from jaxrl_reason.training.loop import make_train_fns
from jaxrl_reason.training.state import build_model, build_optimizer
from jaxrl_reason.training.step_search import search_kwargs
from tests.test_train import fresh_train_fns, tiny_config


def _config(**changes):
    c = tiny_config(algorithm="step_search", sft__steps=0, env_id="countdown-v0", env_kwargs={}, **changes)
    c.env_kwargs.num_numbers = (3, 3)
    c.rl.num_problems, c.rl.group_size, c.rl.updates_per_batch = 4, 2, 1
    c.step_search.num_simulations, c.step_search.num_candidates, c.step_search.max_depth = 4, 3, 2
    return c


def _collected(config):
    env, model, fns, state = fresh_train_fns(config)
    before = jax.device_get(state)  # collect donates its input
    new, metrics = fns.collect(state)
    return env, model, fns, before, new, metrics


def _problem(env, tokens, prompt_length):
    """countdown's prompt is ``<bos>a,b,c:target`` (one token per character)."""
    numbers, target = env.tokenizer.decode([int(t) for t in tokens[1:prompt_length]]).split(":")
    return {"numbers": [int(x) for x in numbers.split(",")], "target": int(target)}


def test_collect_stores_the_step_mcts_episodes_and_the_update_imitates_them():
    config = _config()
    config.step_search.keep = "all"  # ("correct" is expert iteration's accepted_mask: tests/test_star*.py)
    config.rl.learning_rate, config.rl.warmup_steps = 3e-3, 0
    env, model, fns, state, new, metrics = _collected(config)
    buf = jax.device_get(new.buffer)
    problems = [_problem(env, t, int(p)) for t, p in zip(buf["tokens"], buf["prompt_length"], strict=True)]
    assert all(problems[i] == problems[i + 1] for i in range(0, 8, 2))  # G = 2 episodes per problem
    # the same search from the same problems and key plays the same episodes
    key = jax.random.fold_in(jax.random.fold_in(state.key, state.step), 1)
    search = jax.jit(lambda p, s, k: decode(model, p, env, s, k, method="step_mcts", **search_kwargs(config)))
    out = jax.device_get(search(state.params, initial_states(env, problems), jax.random.split(key)[1]))
    np.testing.assert_array_equal(buf["tokens"], out.tokens)
    np.testing.assert_array_equal(buf["length"], out.final_state.length)
    tok = env.tokenizer
    rewards = []
    for i, problem in enumerate(problems):
        p0, n = int(buf["prompt_length"][i]), int(buf["length"][i])
        rewards.append(env.score_text(problem, tok.decode([int(t) for t in buf["tokens"][i, p0:n]]).split(tok.eos)[0]))
    np.testing.assert_array_equal(out.returns[:, 0], rewards)  # the verifier's reward, re-scored in Python
    assert float(metrics["rl_accuracy"]) == pytest.approx(np.mean(np.asarray(rewards) == 1.0))
    assert buf["accepted"].all()  # keep="all": every searched path is imitated

    def nll(params):
        b = new.buffer
        logits, _ = model.apply(params, b["tokens"])
        return float(star_loss(logits, b["tokens"], b["prompt_length"], b["length"], b["accepted"])[0])

    before = nll(new.params)
    for _ in range(5):
        new, _ = fns.update(new)
    assert nll(new.params) < before - 0.05


def test_config_and_task_checks():
    with pytest.raises(ConfigError, match="step_search.keep"):
        validate(_config(step_search__keep="best"))
    with pytest.raises(ConfigError, match="step_search.num_candidates"):
        validate(_config(step_search__num_candidates=0))
    config = tiny_config(algorithm="step_search", env_id="tic-tac-toe-v0", env_kwargs={}, sft__steps=0)
    env = make(config.env_id)
    with pytest.raises(ValueError, match="one-player"):
        make_train_fns(config, env, build_model(config, env), build_optimizer(config))
