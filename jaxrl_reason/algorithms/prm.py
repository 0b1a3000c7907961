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

import dataclasses
import json
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxrl_reason.algorithms.common import masked_mean, value_head_only
from jaxrl_reason.types import Array

# -- exact step checkers (Python) ------------------------------------------------------------------------
_ADD_STEP = re.compile(r"^(\d)\+(\d)(\+1)?=(\d+),$")
_CD_STEP = re.compile(r"^(\d+)([-+*/])(\d+)=(\d+),$")


def split_steps(response_text: str, answer_marker: str) -> tuple[list[str], str | None]:
    """``"7+8=15,5+6+1=12,<ans>125"`` -> ``(["7+8=15,", "5+6+1=12,"], "<ans>125")``; the answer step is
    None when there is no marker (an unfinished tail without ``","`` is then dropped)."""
    head, marker, tail = response_text.partition(answer_marker)
    steps = [s + "," for s in head.split(",")[:-1]]
    return steps, (marker + tail) if marker else None


def addition_step_ok(problem: dict, index: int, step: str) -> bool:
    """Whether column step `index` (0 = ones) is the true column: digits of a and b, carry-in, sum."""
    m = _ADD_STEP.match(step)
    if not m:
        return False
    a, b = problem["a"], problem["b"]
    columns = max(len(str(a)), len(str(b)))
    if index >= columns:
        return False
    da, db = (a // 10**index) % 10, (b // 10**index) % 10
    carry = int((a % 10**index) + (b % 10**index) >= 10**index) if index else 0
    total = da + db + carry
    return (
        int(m.group(1)) == da
        and int(m.group(2)) == db
        and (m.group(3) is not None) == bool(carry)
        and m.group(4) == str(total)
    )


def countdown_steps_ok(problem: dict, steps: list[str]) -> list[bool]:
    """Per step: ``a op b = c`` is exact arithmetic (``/`` exact, no negative results) on two numbers still
    available (the given numbers and earlier results, each used once), and all earlier steps were too."""
    pool = list(problem["numbers"])
    out, ok = [], True
    for step in steps:
        m = _CD_STEP.match(step)
        if ok and m:
            a, op, b, c = int(m.group(1)), m.group(2), int(m.group(3)), int(m.group(4))
            value = {"+": a + b, "-": a - b, "*": a * b, "/": a // b if b and a % b == 0 else None}[op]
            rest = list(pool)
            have = a in rest and (rest.remove(a) or True) and b in rest
            if have and value is not None and value >= 0 and value == c and str(c) == m.group(4):
                rest.remove(b)
                pool = [*rest, c]
            else:
                ok = False
        else:
            ok = False
        out.append(ok)
    return out


def exact_step_labels(env, problem: dict, response_text: str) -> list[bool]:
    """Ground-truth correctness of each prefix ending at a step boundary (steps, then the answer if any).

    Addition: every column so far is the true column (:func:`addition_step_ok`); countdown: every
    operation so far is exact on available numbers (:func:`countdown_steps_ok`); the answer step is
    correct iff the verifier accepts the response and every earlier step is correct.
    """
    steps, answer = split_steps(response_text, env.tokenizer.answer_marker)
    env_id = env.spec.env_id
    if env_id.startswith("addition"):
        ok, labels = True, []
        for i, s in enumerate(steps):
            ok = ok and addition_step_ok(problem, i, s)
            labels.append(ok)
    elif env_id.startswith("countdown"):
        labels = countdown_steps_ok(problem, steps)
    else:
        raise ValueError(f"exact step labels exist for addition and countdown, got env {env_id!r}")
    if answer is not None:
        prior = labels[-1] if labels else True
        labels.append(prior and env.score_text(problem, response_text) == 1.0)
    return labels


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
    from jaxrl_reason.search.decoding import decode

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


def train_prm(
    key,
    model,
    params,
    data: dict,
    *,
    steps: int = 200,
    batch_size: int = 64,
    learning_rate: float = 1e-3,
    head_only: bool = False,
):
    """Fits the value head (and, unless ``head_only``, the trunk) of a copy of ``params`` to ``data``
    (``tokens [N, L]``, ``targets``, ``mask``); returns ``(params, losses)``.

    ``head_only`` keeps every other parameter bit-identical, so the result is still the same policy, now
    with a PRM as its value head (one network serves sampling, ORM/PRM selection, beam and MCTS)."""
    tx = optax.adam(learning_rate)
    opt = tx.init(params)
    n = data["tokens"].shape[0]

    @jax.jit
    def update(params, opt, idx):
        def loss_fn(p):
            if head_only:
                p = value_head_only(p)
            _, values = model.apply(p, data["tokens"][idx])
            return prm_loss(values, data["targets"][idx], data["mask"][idx])[0]

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt = tx.update(grads, opt, params)
        return optax.apply_updates(params, updates), opt, loss

    losses = []
    for s in range(steps):
        idx = jax.random.randint(jax.random.fold_in(key, s), (min(batch_size, n),), 0, n)
        params, opt, loss = update(params, opt, idx)
        losses.append(float(loss))
    return params, losses


# -- using a PRM in search ---------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class PolicyWithPRM:
    """A model for :func:`jr.decode` whose policy is ``policy`` and whose value head is the PRM ``prm``.

    Params are the pair ``(policy_params, prm_params)``. ``apply`` runs both networks (value =
    the PRM's), ``prefill``/``decode`` only the policy (sampling needs no values). FLOPs reported by
    ``decode`` count one network per forward; a full ``apply`` here costs two (same-size PRM).
    """

    policy: object
    prm: object

    @property
    def config(self):
        return self.policy.config

    def apply(self, params, tokens, **kwargs):
        logits, _ = self.policy.apply(params[0], tokens, **kwargs)
        _, values = self.prm.apply(params[1], tokens, **kwargs)
        return logits, values

    def prefill(self, params, tokens, lengths):
        return self.policy.prefill(params[0], tokens, lengths)

    def decode(self, params, cache, tokens, positions):
        return self.policy.decode(params[0], cache, tokens, positions)


def save_prm(directory: str, model, params) -> None:
    """Writes the PRM (Orbax params + JSON model config) to `directory`."""
    import orbax.checkpoint as ocp

    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "model.json"), "w") as f:
        json.dump(dataclasses.asdict(model.config), f, indent=2)
    path = os.path.abspath(os.path.join(directory, "params"))
    ckpt = ocp.StandardCheckpointer()
    ckpt.save(path, params, force=True)
    ckpt.wait_until_finished()


def load_prm(directory: str):
    """``(model, params)`` of a PRM written by :func:`save_prm`."""
    import orbax.checkpoint as ocp

    from jaxrl_reason.models import PolicyValueTransformer, TransformerConfig

    with open(os.path.join(directory, "model.json")) as f:
        model = PolicyValueTransformer(TransformerConfig(**json.load(f)))
    abstract = jax.eval_shape(model.init, jax.random.PRNGKey(0))
    params = ocp.StandardCheckpointer().restore(os.path.abspath(os.path.join(directory, "params")), abstract)
    return model, params
