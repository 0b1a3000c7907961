"""Dense process rewards for GRPO / RLOO from a task's exact step checker (``rl.process_reward="steps"``).

Sparse final rewards credit every token of a long response alike; a process reward says which steps were right.
Here the task's exact step checker (``env.step_labels``: addition's columns, countdown's operations; it reads
the problem, never a stored answer) labels each step of each sampled response, and the label becomes that
step's reward at its last token. :func:`token_advantages` turns them into per-token advantages::

    A[b, t] = outcome_advantage[b] + rl.process_weight * sum_{steps s ending at or after t} r~[b, s]

with ``r~`` the step rewards normalised as ``rl.process_normalize`` says
(:func:`jaxrl_reason.algorithms.grpo.process_advantages`: ``"group"`` is DeepSeekMath's process supervision).

The checker is Python: it runs on the host through :func:`jax.pure_callback` inside the jitted collection
(single-process runs; the callback sees the whole batch).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxrl_reason.algorithms.grpo import process_advantages
from jaxrl_reason.algorithms.prm import step_boundaries


def check_usable(env) -> None:
    """ValueError unless the task has an exact step checker and the run is one process."""
    if not getattr(env, "has_step_checker", False):
        raise ValueError(
            f"rl.process_reward='steps' needs a task with an exact step checker (addition, countdown with "
            f"demo_style='path'); {env.spec.env_id} has none"
        )
    if jax.process_count() > 1:
        raise ValueError("rl.process_reward='steps' runs its step checker on one host: multi-process runs need 'none'")


def step_rewards_host(env, tokens, prompt_length, valid, problems) -> tuple[np.ndarray, np.ndarray]:
    """``(rewards [B, T] float32, step_end [B, T] bool)`` of a batch of responses, in NumPy.

    Row ``b``'s response is ``tokens[b, prompt_length[b] : prompt_length[b] + valid[b].sum()]``. Its steps end
    at the step separator tokens (``","``) before the answer marker, and its answer step at its last token
    before EOS (when it has a marker); each gets 1.0 if ``env.step_labels`` calls it (and all before it)
    correct, else 0.0. `problems` is the batch's problem pytree (``[B, ...]`` leaves)."""
    tok = env.tokenizer
    answer, eos = tok.answer_id, tok.eos_id
    tokens, prompt_length, valid = np.asarray(tokens), np.asarray(prompt_length), np.asarray(valid)
    problems = jax.tree.map(np.asarray, problems)
    length = prompt_length + valid.sum(1)
    # the same step split as the PRM's labels: the empty prefix, then each "," before the answer marker
    bounds, has = step_boundaries(
        tokens, prompt_length, length, comma_id=tok.id_of(","), answer_id=answer, max_steps=valid.shape[1] + 1
    )
    rewards = np.zeros(valid.shape, np.float32)
    step_end = np.zeros(valid.shape, bool)
    for b in range(valid.shape[0]):
        p0, n = int(prompt_length[b]), int(valid[b].sum())
        ids = tokens[b, p0 : p0 + n]
        stop = int(np.argmax(ids == eos)) if (ids == eos).any() else n  # the text the verifier reads
        ids = ids[:stop]
        ends = [int(t) - p0 for t in bounds[b, 1:][has[b, 1:]]]
        if (ids == answer).any():
            ends.append(stop - 1)
        problem = env.problem_to_dict(jax.tree.map(lambda x, b=b: x[b], problems))
        labels = env.step_labels(problem, tok.decode(ids))
        if len(labels) != len(ends):  # the checker and the token split disagree: a task bug, never silent
            raise RuntimeError(f"{env.spec.env_id}: {len(labels)} step labels for {len(ends)} steps in {ids}")
        rewards[b, ends] = np.asarray(labels, np.float32)
        step_end[b, ends] = True
    return rewards, step_end


def step_rewards(env, traj) -> tuple[jax.Array, jax.Array]:
    """:func:`step_rewards_host` of a rollout's Trajectory, callable inside jit (a host callback)."""
    shape = traj.valid.shape
    out = (jax.ShapeDtypeStruct(shape, jnp.float32), jax.ShapeDtypeStruct(shape, jnp.bool_))
    host = lambda *args: step_rewards_host(env, *args)  # noqa: E731
    return jax.pure_callback(
        host, out, traj.tokens, traj.prompt_length, traj.valid, traj.final_state.problem, vmap_method="sequential"
    )


def token_advantages(rl, outcome_advantages, rewards, step_end, valid, group_size: int) -> jax.Array:
    """``[B, T]`` advantages: the outcome advantage on every valid token plus the weighted process term."""
    process = process_advantages(rewards, step_end, valid, group_size=group_size, normalize=rl.process_normalize)
    return jnp.where(valid, outcome_advantages[:, None], 0.0) + rl.process_weight * process
