"""Problem sets for training and evaluation: sampled demonstration sets and disjoint held-out sets.

Problems are sampled with the env's own ``sample_problem`` from a seed, so every set is reproducible
from ``(env, seed, size)``; held-out sets exclude every problem of the training set.
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np


def problem_key(problem_dict: dict) -> str:
    """Canonical string of a problem dict (for de-duplication)."""
    return json.dumps(problem_dict, sort_keys=True)


def sample_problem_dicts(env, key: jax.Array, num: int, *, exclude: set[str] | None = None) -> list[dict]:
    """`num` distinct problem dicts sampled from `key`, none of whose keys is in `exclude`.

    Raises ValueError when the env's problem space is too small to give `num` of them.
    """
    exclude = exclude or set()
    out: list[dict] = []
    seen = set(exclude)
    sample = jax.jit(jax.vmap(env.sample_problem))
    for attempt in range(20):
        batch = jax.device_get(sample(jax.random.split(jax.random.fold_in(key, attempt), max(num, 64))))
        for i in range(jax.tree.leaves(batch)[0].shape[0]):
            d = env.problem_to_dict(jax.tree.map(lambda x, i=i: x[i], batch))
            k = problem_key(d)
            if k not in seen:
                seen.add(k)
                out.append(d)
                if len(out) == num:
                    return out
    raise ValueError(
        f"could only sample {len(out)} distinct problems of {env.spec.env_id} (wanted {num}, excluding "
        f"{len(exclude)}): the problem space is too small; lower the set size or raise the difficulty"
    )


def stack_problems(env, problem_dicts: list[dict]):
    """One problem pytree with a leading axis, from dicts."""
    rows = [env.problem_from_dict(d) for d in problem_dicts]
    # stack on the host: one jnp.stack over thousands of arrays compiles a huge XLA op
    return jax.tree.map(lambda *xs: jnp.asarray(np.stack([np.asarray(x) for x in xs])), *rows)


def demonstration_set(env, problem_dicts: list[dict]) -> dict[str, np.ndarray]:
    """Token arrays of worked solutions: ``tokens [N, L]``, ``prompt_length [N]``, ``length [N]``.

    Each row is ``[bos] prompt demonstration <eos>``, padded.
    """
    spec, tok = env.spec, env.tokenizer
    states = jax.device_get(jax.jit(jax.vmap(env.init_from_problem))(stack_problems(env, problem_dicts)))
    tokens = np.array(states.tokens)
    prompt_length = np.asarray(states.prompt_length, np.int32)
    length = np.zeros(len(problem_dicts), np.int32)
    for i, d in enumerate(problem_dicts):
        demo = tok.encode(env.demonstration(d)) + [tok.eos_id]
        start = int(prompt_length[i])
        if start + len(demo) > spec.max_length:
            raise ValueError(
                f"the demonstration of {d} takes {len(demo)} tokens but {spec.env_id} allows "
                f"{spec.max_length - start} after its prompt; raise env_kwargs.max_response_length"
            )
        tokens[i, start : start + len(demo)] = demo
        length[i] = start + len(demo)
    return {"tokens": tokens, "prompt_length": prompt_length, "length": length}


def run_problem_sets(env, seed: int, num_train: int, num_eval: int) -> tuple[list[dict], list[dict]]:
    """A run's demonstration problems and its held-out problems (disjoint), both from `seed`."""
    key = jax.random.PRNGKey(seed)
    train = sample_problem_dicts(env, jax.random.fold_in(key, 101), num_train)
    seen = {problem_key(d) for d in train}
    return train, sample_problem_dicts(env, jax.random.fold_in(key, 202), num_eval, exclude=seen)
