"""Problem sets for training and evaluation: sampled demonstration sets, held-out sets, padded batches.

Problems are sampled with the env's own ``sample_problem`` from a seed, so every set is reproducible
from ``(env, seed, size)``; held-out sets exclude every problem of the training set. A run's held-out set
is :func:`heldout_problems` (sampled from the seed, or a TFDS problem set named by the config).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxrl_reason.datasets import read_problems, write_problems


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
    """A run's demonstration problems and its held-out problems (disjoint), both from `seed`: the held-out
    set first, then the training set sampled without any held-out problem."""
    heldout = seeded_heldout(env, seed, num_eval)
    return training_problems(env, seed, num_train, heldout), heldout


def seeded_heldout(env, seed: int, num: int) -> list[dict]:
    """`num` distinct held-out problems sampled from `seed` (the stream every run's held-out set comes from)."""
    return sample_problem_dicts(env, jax.random.fold_in(jax.random.PRNGKey(seed), 202), num)


def training_problems(env, seed: int, num: int, heldout: Sequence[dict]) -> list[dict]:
    """`num` distinct problems for imitation (demonstrations, a teacher's samples), none of them held out."""
    exclude = {problem_key(d) for d in heldout}
    return sample_problem_dicts(env, jax.random.fold_in(jax.random.PRNGKey(seed), 101), num, exclude=exclude)


def heldout_problems(env, config) -> list[dict]:
    """The held-out problem set of a run (the same set the training loop evaluates on): the TFDS dataset
    ``eval.tfds_name`` if the config names one, else sampled from the seed."""
    if config.eval.get("tfds_name"):
        return read_problems(
            config.eval.tfds_name, data_dir=config.eval.tfds_data_dir, split=config.eval.get("tfds_split", "test")
        )
    return seeded_heldout(env, config.seed, config.eval.num_problems)


def run_problems(env, config) -> tuple[list[dict], list[dict]]:
    """The one place a run's problem sets come from: ``(imitation problems, held-out problems)``, disjoint.
    The RL streams exclude the same held-out set (:func:`stream_init`)."""
    heldout = heldout_problems(env, config)
    return training_problems(env, config.seed, config.sft.num_examples, heldout), heldout


#: a training stream redraws a held-out problem at most this many times: with a held-out share of the problem
#: distribution at most MAX_HELDOUT_SHARE (checked up front), one still held out after that has probability < 1e-19
MAX_REDRAWS = 64
MAX_HELDOUT_SHARE = 0.5


def _check_share(env, held_out, size: int, draws: int = 2048) -> None:
    """Refuses a held-out set that covers most of the env's problem distribution (estimated from `draws`)."""
    problems = jax.vmap(env.sample_problem)(jax.random.split(jax.random.PRNGKey(0), draws))
    share = float(jax.jit(jax.vmap(held_out))(problems).mean())
    if share > MAX_HELDOUT_SHARE:
        raise ValueError(
            f"the {size} held-out problems are {share:.0%} of what {env.spec.env_id} samples; training streams "
            f"must be able to avoid them (at most {MAX_HELDOUT_SHARE:.0%}): use fewer eval problems or a harder task"
        )


def stream_init(env, heldout: Sequence[dict]):
    """``init(key) -> EnvState`` for the training streams (self-play, RL, expert iteration): ``env.init(key)``
    unless its problem is one of `heldout`, then a problem redrawn from ``fold_in(key, i)`` until it is not.
    Pure (jit and vmap it); the held-out problems are a constant table compared by value."""
    if not heldout or not hasattr(env, "problem_from_dict"):
        return env.init
    table = stack_problems(env, list(heldout))

    def held_out(problem) -> jax.Array:
        same = [
            (t == jnp.asarray(p)[None]).reshape(t.shape[0], -1).all(axis=1)
            for t, p in zip(jax.tree.leaves(table), jax.tree.leaves(problem), strict=True)
        ]
        return jnp.stack(same).all(axis=0).any()

    _check_share(env, held_out, len(heldout))

    def init(key):
        def redraw(carry):
            i, _ = carry
            return i + 1, env.sample_problem(jax.random.fold_in(key, i))

        def again(carry):
            i, problem = carry
            return held_out(problem) & (i < MAX_REDRAWS)

        _, problem = jax.lax.while_loop(again, redraw, (jnp.int32(0), env.sample_problem(key)))
        return env.init_from_problem(problem)

    return init


def write_heldout(env, config, name: str, *, data_dir: str | os.PathLike, split: str = "test") -> str:
    """Writes a run's held-out problems (:func:`heldout_problems`) as the TFDS dataset `name`."""
    return write_problems(heldout_problems(env, config), name, data_dir=data_dir, split=split)


def padded_chunks(items: Sequence, size: int) -> Iterator[tuple[int, int, list]]:
    """``(start, n, chunk)`` over `items` in chunks of exactly `size`: the last one is padded with copies of
    its last item, so a jitted function of a chunk compiles once; only the first `n` results are real."""
    if size < 1:
        raise ValueError(f"batch size must be >= 1, got {size}")
    for start in range(0, len(items), size):
        chunk = list(items[start : start + size])
        yield start, len(chunk), chunk + [chunk[-1]] * (size - len(chunk))


def initial_states(env, problem_dicts: Sequence[dict]):
    """The initial env states ``[N]`` of problem dicts."""
    return jax.vmap(env.init_from_problem)(stack_problems(env, list(problem_dicts)))
