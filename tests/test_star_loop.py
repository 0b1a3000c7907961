"""STaR / ReST-EM in the training loop: what it stores, what it imitates, and a skipped empty batch."""

import jax
import numpy as np

from jaxrl_reason.envs.registry import make
from jaxrl_reason.evaluation.heldout import thinking_budget_env
from jaxrl_reason.problems import heldout_problems
from jaxrl_reason.run.agent import Agent
from jaxrl_reason.training.loop import make_train_fns, train
from jaxrl_reason.training.state import build_model, build_optimizer, init_state
from tests._tiny_run import tiny_run
from tests.test_train import restored_state, tiny_config


def _star_config(**changes):
    c = tiny_config(algorithm="star", **changes)
    c.rl.num_problems, c.rl.group_size, c.rl.updates_per_batch = 8, 4, 1
    return c


def test_star_keeps_exactly_the_verified_responses(tmp_path):
    config = _star_config(total_steps=6, sft__steps=4, checkpoint_every=6, eval_every=6)
    config.optim.learning_rate = 3e-3
    train(config, str(tmp_path), progress=False)
    env = make(config.env_id, **dict(config.env_kwargs))
    buf = restored_state(config, tmp_path).buffer
    tok = env.tokenizer
    heldout = {tuple(sorted(d.items())) for d in heldout_problems(env, config)}
    for i in range(buf["tokens"].shape[0]):
        p0, n = int(buf["prompt_length"][i]), int(buf["length"][i])
        prompt = tok.decode([int(t) for t in buf["tokens"][i, 1:p0]])
        a, b = (int(x) for x in prompt.rstrip("=").split("+"))
        response = tok.decode([int(t) for t in buf["tokens"][i, p0:n]]).split(tok.eos)[0]
        # accepted iff the Python verifier accepts the response; never a held-out problem
        assert bool(buf["accepted"][i]) == (env.score_text({"a": a, "b": b}, response) == 1.0)
        assert (("a", a), ("b", b)) not in heldout


def test_a_batch_with_no_accepted_response_changes_nothing():
    config = _star_config(total_steps=8, sft__steps=0)
    env = make(config.env_id, **dict(config.env_kwargs))
    model, tx = build_model(config, env), build_optimizer(config)
    fns = make_train_fns(config, env, model, tx)
    state = init_state(config, env, model, tx, mesh=fns.mesh)
    state = state.replace(buffer={**state.buffer, "accepted": state.buffer["accepted"] & False})
    before = jax.device_get((state.params, state.opt_state))
    state, metrics = fns.update(state)
    after = jax.device_get((state.params, state.opt_state))
    assert int(state.step) == 1 and float(metrics["num_accepted"]) == 0
    for x, y in zip(jax.tree.leaves(before), jax.tree.leaves(after), strict=True):
        np.testing.assert_array_equal(x, y)


def test_a_thinking_budget_cuts_responses_at_that_many_tokens():
    agent = Agent.load(tiny_run())
    full = agent.env.spec.max_response_length
    env = thinking_budget_env(agent, 3)
    assert env.spec.max_response_length == 3 and full > 3
    from jaxrl_reason.evaluation.heldout import evaluate

    problems = heldout_problems(agent.env, agent.config)
    out = evaluate(agent, env, problems, method="greedy", return_responses=True)
    # a 1-digit sum's worked solution needs more than 3 tokens: nothing fits, nothing is right
    assert out["mean_response_tokens"] <= 3 and out["accuracy"] == 0.0
    assert all(len(env.tokenizer.encode(r["response"])) <= 3 for r in out["responses"])
    too_long = agent.model.config.max_length
    try:
        thinking_budget_env(agent, too_long)
    except ValueError as e:
        assert "the model reads at most" in str(e)
    else:
        raise AssertionError("a budget beyond the model's length must be refused")


def test_star_with_a_value_weight_fits_the_value_head_to_the_rewards_of_all_samples(tmp_path):
    from jaxrl_reason.algorithms.star import outcome_value_loss

    config = _star_config(total_steps=8, sft__steps=4, checkpoint_every=8, eval_every=8)
    config.star.value_weight = 1.0
    config.optim.learning_rate, config.rl.learning_rate = 3e-3, 3e-3
    env = make(config.env_id, **dict(config.env_kwargs))
    model, tx = build_model(config, env), build_optimizer(config)
    fns = make_train_fns(config, env, model, tx)
    state = init_state(config, env, model, tx, mesh=fns.mesh)
    state = state.replace(step=state.step + 4)  # the RL phase
    state, _ = fns.collect(state)
    buf = jax.device_get(state.buffer)
    # the stored reward is the verifier's, for every sample (accepted or not)
    tok = env.tokenizer
    for i in range(buf["tokens"].shape[0]):
        p0, n = int(buf["prompt_length"][i]), int(buf["length"][i])
        a, b = (int(x) for x in tok.decode([int(t) for t in buf["tokens"][i, 1:p0]]).rstrip("=").split("+"))
        response = tok.decode([int(t) for t in buf["tokens"][i, p0:n]]).split(tok.eos)[0]
        assert buf["reward"][i] == env.score_text({"a": a, "b": b}, response)

    def value_loss(params):
        _, values = model.apply(params, state.buffer["tokens"])
        b = state.buffer
        return float(outcome_value_loss(values, b["prompt_length"], b["length"], b["reward"])[0])

    before = value_loss(state.params)
    for _ in range(4):
        state, metrics = fns.update(state)
    assert "value_loss" in metrics and value_loss(state.params) < 0.5 * before
