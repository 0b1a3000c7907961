"""Responses of a run's policy to a list of problems: the one loop over padded problem batches.

Used by distillation (a teacher's samples), PRM fitting (responses to label) and anyone who wants to read
what a model writes. One compile per (model, env, setting), reused for every batch.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxrl_reason.models import rollout
from jaxrl_reason.problems import initial_states, padded_chunks

SAMPLE_BATCH = 256


def sample_responses(
    agent,
    env,
    problem_dicts: list[dict],
    key: jax.Array,
    *,
    temperature: float = 1.0,
    samples_per_problem: int = 1,
    with_logits: bool = False,
) -> dict[str, np.ndarray]:
    """Samples of ``agent`` (a :class:`jr.Agent`) on the problems: numpy ``tokens [N, L]``, ``prompt_length``,
    ``length``, ``reward [N]`` (and ``teacher_log_probs [N, L-1, A]`` with ``with_logits``; ``written [N, L]``, the
    tokens the env wrote, when ``env.writes_tokens``),
    ``N = len(problem_dicts) * samples_per_problem``. Deterministic given `key`."""
    model = agent.model
    if model.config.num_actions != env.spec.num_actions or model.config.max_length < env.spec.max_length:
        raise ValueError(
            f"model (num_actions={model.config.num_actions}, max_length={model.config.max_length}) does "
            f"not fit env {env.spec.env_id} (num_actions={env.spec.num_actions}, max_length={env.spec.max_length})"
        )
    fn = _sampler(model, env, float(temperature), bool(with_logits))
    dicts = [d for d in problem_dicts for _ in range(samples_per_problem)]
    chunks = []
    for start, n, padded in padded_chunks(dicts, SAMPLE_BATCH):
        out = jax.device_get(fn(agent.params, initial_states(env, padded), jax.random.fold_in(key, start)))
        chunks.append({k: np.asarray(v)[:n] for k, v in out.items()})
    return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}


@functools.lru_cache(maxsize=8)
def _sampler(model, env, temperature: float, with_logits: bool):
    """The jitted sampling function of a (model, env, setting), compiled once per process."""

    def sample(params, states, key):
        traj = rollout(model, params, env, states, key, temperature=temperature)
        out = {
            "tokens": traj.tokens,
            "prompt_length": traj.prompt_length,
            "length": traj.final_state.length,
            "reward": traj.returns[:, 0],
        }
        if env.writes_tokens:
            out["written"] = jax.vmap(env.written_mask)(traj.final_state)
        if with_logits:
            logits, _ = model.apply(params, traj.tokens)
            out["teacher_log_probs"] = jax.nn.log_softmax(logits[:, :-1].astype(jnp.float32), axis=-1)
        return out

    return jax.jit(sample)
