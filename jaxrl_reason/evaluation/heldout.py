"""Held-out evaluation: a run's agent solves reasoning problems, one response per problem.

``evaluate`` is pass@1 for ``greedy`` and ``sample`` (one response, no verifier at test time). ``mcts``
searches at every token with the run's own search settings (:func:`jaxrl_reason.run.test_time_search`);
on tasks whose reward compares with a stored answer the search must not see that reward (see
docs/search.md).
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from jaxrl_reason.envs.bpe import BPETokenizer
from jaxrl_reason.envs.registry import make
from jaxrl_reason.models import rollout
from jaxrl_reason.problems import initial_states, padded_chunks
from jaxrl_reason.run.agent import METHODS, Agent, checked_search, default_temperature
from jaxrl_reason.run.pretrained import over_tokenizer
from jaxrl_reason.search import SearchConfig, selfplay
from jaxrl_reason.search.on_mesh import per_row


def evaluate(
    agent: Agent,
    env,
    problems: list[dict],
    *,
    method: str = "greedy",
    num_simulations: int | None = None,
    search: SearchConfig | None = None,
    temperature: float | None = None,
    batch_size: int = 256,
    seed: int = 0,
    mesh=None,
    return_responses: bool = False,
) -> dict:
    """Accuracy of `agent` on reasoning `problems` (dicts), one response each, solved with `method`.

    Problems are solved in padded batches of `batch_size` (one compile), each problem with its own key and,
    with a `mesh` (default: the agent's), on its share of the devices: results do not depend on the mesh.
    ``mcts`` uses `search` (default: the agent's :attr:`~Agent.search`, the run's settings without Gumbel
    noise), with `num_simulations` if given. `temperature`: 0 argmax, > 0 sampling; default 1 for
    ``"sample"``, 0 otherwise. Returns ``accuracy`` (fraction with reward 1), ``mean_reward``,
    ``num_problems``, ``mean_response_tokens``, ``tokens_generated``, ``method``, ``with_verifier`` (the
    search read the task's checker: allowed only where it needs no stored answer) and, for MCTS, the
    search's ``num_simulations``; with `return_responses`, ``responses``: one dict per problem, in order,
    with ``problem``, ``response`` (the decoded text) and ``reward``.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if not problems:
        raise ValueError("evaluate() needs at least one problem")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    temperature = default_temperature(method, temperature)
    cfg = None
    if method == "mcts":
        cfg = search or agent.search
        cfg = cfg.replace(num_simulations=num_simulations) if num_simulations is not None else cfg
        cfg = checked_search(env, cfg)
    mesh = agent.mesh if mesh is None else mesh
    fn = agent._fn(
        ("solve", env, method, temperature, cfg, mesh), _make_solver, agent.model, env, method, temperature, cfg, mesh
    )
    rewards, lengths, finals = [], [], []
    for start, n, padded in padded_chunks(problems, batch_size):
        key = jax.random.fold_in(jax.random.PRNGKey(seed), start)
        final = jax.device_get(fn(agent.params, initial_states(env, padded), key))
        rewards.append(np.asarray(final.rewards)[:n, 0])
        lengths.append(np.asarray(final.length - final.prompt_length)[:n])
        finals.append(jax.tree.map(lambda x, n=n: np.asarray(x)[:n], final))
    rewards, lengths = np.concatenate(rewards), np.concatenate(lengths)
    out = {
        "accuracy": float((rewards == 1.0).mean()),
        "mean_reward": float(rewards.mean()),
        "num_problems": len(problems),
        "mean_response_tokens": float(lengths.mean()),
        "tokens_generated": int(lengths.sum()),
        "method": method,
    }
    out["with_verifier"] = bool(cfg is not None and cfg.use_reward)  # the search read the task's checker
    if cfg is not None:
        out["num_simulations"] = cfg.num_simulations
    if return_responses:
        out["responses"] = _responses(env, problems, finals, rewards)
    return out


def thinking_budget_env(agent: Agent, max_response_tokens: int):
    """The agent's env with every response cut at `max_response_tokens` tokens: a thinking budget at test time
    (the verifier scores what was written by then; :func:`evaluate` it like the run's own env)."""
    if agent.config is None:
        raise ValueError("a thinking budget needs the agent's run config (Agent.load gives one)")
    if int(max_response_tokens) < 1:
        raise ValueError(f"max_response_tokens must be >= 1, got {max_response_tokens}")
    kwargs = {**dict(agent.config.env_kwargs), "max_response_length": int(max_response_tokens)}
    env = make(agent.config.env_id, **kwargs)
    if isinstance(getattr(agent.env, "tokenizer", None), BPETokenizer):  # a run over a pretrained model's vocabulary
        chat = {"chat": getattr(agent.env, "chat", False), "system": getattr(agent.env, "system", None)}
        env = over_tokenizer(env, agent.env.tokenizer, agent.env.spec.num_actions, **chat)
    if env.spec.max_length > agent.model.config.max_length:
        raise ValueError(
            f"max_response_tokens={max_response_tokens} makes episodes of {env.spec.max_length} tokens; the model "
            f"reads at most {agent.model.config.max_length}"
        )
    return env


def _responses(env, problems: list[dict], finals: list, rewards: np.ndarray) -> list[dict[str, Any]]:
    """One ``{problem, response, reward}`` per problem: the response as text, cut at its EOS."""
    tok, out, i = env.tokenizer, [], 0
    for final in finals:
        for row in range(final.length.shape[0]):
            p0, n = int(final.prompt_length[row]), int(final.length[row])
            text = tok.decode([int(t) for t in final.tokens[row, p0:n]])
            out.append({"problem": problems[i], "response": text.split(tok.eos, 1)[0], "reward": float(rewards[i])})
            i += 1
    return out


def _make_solver(model, env, method: str, temperature: float, search: SearchConfig | None, mesh=None):
    def solve_one(params, states, key):  # one problem (a batch of 1): its own search or rollout
        if method == "mcts":
            traj = selfplay(model, params, env, states, key, search=search, temperature=temperature)
        elif temperature == 0:
            traj = rollout(model, params, env, states, key, greedy=True)
        else:
            traj = rollout(model, params, env, states, key, temperature=temperature)
        # report the reward the episode ended with (rewards of the final transition are in the trajectory)
        return traj.final_state.replace(rewards=traj.returns)

    return jax.jit(lambda params, states, key: per_row(solve_one, mesh, params, states, key))
