"""Process reward model (PRM): the value of a partial response, learned from Monte-Carlo rollouts.

Math-Shepherd style. A **step** is a segment of the response that ends with ``","`` before the answer
marker (addition: one column, ``"5+6+1=12,"``; countdown: one operation, ``"5*3=15,"``); the answer
(``<ans>...<eos>``) is the last step. For each sampled response, every step boundary (the empty
prefix too) is continued ``k`` times by the policy (:func:`jr.decode`, ``method="sample"``); the
boundary's label is the fraction of completions the verifier accepts (``soft``) or whether any is
(``hard``). The response's own end is labelled by its reward.

The PRM is a :class:`jr.PolicyValueTransformer` (initialised from the policy) whose value head
regresses the label (the expected final reward, in [0, 1]) at every response position, the label of a
position being that of the last boundary at or before it. Plug it into test-time search with :func:`jr.decode`:

* best-of-N PRM-weighted: ``decode(..., method="best_of_n", selection="prm", prm_fn=value_prm(prm, prm_params))``;
* beam search scored by the PRM: ``decode(PolicyWithPRM(policy, prm), (params, prm_params), ..., method="beam")``.

Exact step checkers (:func:`exact_step_labels`) for addition and countdown give the ground truth the
MC labels and the PRM are measured against: a prefix is correct iff every step so far is.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxrl_reason.algorithms.common import masked_mean
from jaxrl_reason.search.decoding import decode
from jaxrl_reason.types import Array


# -- Monte-Carlo labels (JAX) --------------------------------------------------------------------------------
def step_boundaries(
    tokens: np.ndarray, prompt_length: np.ndarray, length: np.ndarray, *, comma_id: int, answer_id: int, max_steps: int
) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the last token of each step prefix: ``[B, max_steps]`` (the empty prefix first, then
    every ``","`` before the answer marker) and a validity mask. Host-side numpy."""
    b = tokens.shape[0]
    pos = np.zeros((b, max_steps), np.int32)
    ok = np.zeros((b, max_steps), bool)
    for i in range(b):
        p0, n = int(prompt_length[i]), int(length[i])
        resp = tokens[i, p0:n]
        stop = np.flatnonzero(resp == answer_id)
        stop = int(stop[0]) if stop.size else len(resp)
        commas = [p0 + j for j in np.flatnonzero(resp[:stop] == comma_id)]
        cuts = [p0 - 1, *commas][:max_steps]
        pos[i, : len(cuts)], ok[i, : len(cuts)] = cuts, True
    return pos, ok


def prefix_states(env, init_states, tokens: Array, upto: Array):
    """States after replaying ``tokens[prompt_length .. upto]`` from ``init_states`` (all ``[N]``, pure)."""
    steps = env.spec.max_response_length

    def one(state, toks, last):
        def body(s, t):
            pos = s.prompt_length + t
            nxt = env.step(s, toks[jnp.minimum(pos, toks.shape[0] - 1)])
            keep = pos <= last
            return jax.tree.map(lambda a, b: jnp.where(keep, a, b), nxt, s), None

        return jax.lax.scan(body, state, jnp.arange(steps))[0]

    return jax.vmap(one)(init_states, tokens, upto)


def mc_labels(
    model, params, env, init_states, tokens: Array, upto: Array, key, *, num_rollouts: int, temperature: float = 1.0
) -> Array:
    """Fraction of ``num_rollouts`` policy completions from each prefix that the verifier accepts: ``[N]``.

    ``init_states [N]`` the problems' initial states, ``tokens [N, L]`` sampled episodes, ``upto [N]`` the
    last token of each prefix. Pure; jit it with the counts static.
    """
    states = prefix_states(env, init_states, tokens, upto)
    states = jax.tree.map(lambda x: jnp.repeat(x, num_rollouts, axis=0), states)
    out = decode(model, params, env, states, key, method="sample", temperature=temperature)
    return (out.returns[:, 0] == 1.0).astype(jnp.float32).reshape(-1, num_rollouts).mean(1)


def prm_targets(
    boundaries: Array,
    boundary_ok: Array,
    labels: Array,
    final_label: Array,
    prompt_length: Array,
    length: Array,
    seq_len: int,
) -> tuple[Array, Array]:
    """Per-position labels ``[B, L]`` and mask: position p in ``[prompt_length-1, length-1]`` takes the label of
    the last valid boundary ``<= p``; the last token (``length-1``) takes ``final_label`` (the reward)."""
    p = jnp.arange(seq_len)[None, :, None]
    before = boundary_ok[:, None, :] & (boundaries[:, None, :] <= p)  # [B, L, M]
    idx = jnp.where(before, jnp.arange(boundaries.shape[1])[None, None], -1).max(-1)  # [B, L]
    tgt = jnp.take_along_axis(labels, jnp.maximum(idx, 0), axis=1)
    pos = jnp.arange(seq_len)[None]
    tgt = jnp.where(pos == (length - 1)[:, None], final_label[:, None], tgt)
    mask = (pos >= (prompt_length - 1)[:, None]) & (pos <= (length - 1)[:, None]) & (idx >= 0)
    return tgt, mask


def prm_loss(values: Array, targets: Array, mask: Array) -> tuple[Array, dict]:
    """Squared error of the value head (``[B, L]``) to the label in [0, 1] on masked positions.

    The label is the value in the project's convention for 0/1-reward tasks (expected final reward, what
    AlphaZero's value targets are too), so search compares it directly with the rewards of finished
    episodes (a failed ending scores 0, not -1)."""
    err = (values.astype(jnp.float32) - targets) ** 2
    loss = masked_mean(err, mask)
    return loss, {"loss": loss}
