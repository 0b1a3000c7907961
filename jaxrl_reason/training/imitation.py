"""The imitation phase of a run: SFT on worked solutions or distillation from a teacher run.

Its data is built once on the host (:func:`imitation_data`); step ``s`` trains on batch
:func:`sft_batch` ``(data, s)``, a deterministic function of ``(seed, s)``, so a resumed run sees the same
batches as one that never stopped. When the env writes tokens (a tool's answers, ``TokenEnv.writes_tokens``)
the data also holds ``written [N, L]``, those tokens, which the loss leaves out.
"""

from __future__ import annotations

import functools

import jax
import numpy as np

from jaxrl_reason import parallel
from jaxrl_reason.algorithms.distill import distill_loss
from jaxrl_reason.algorithms.sft import sft_loss
from jaxrl_reason.envs.replay import replay_written
from jaxrl_reason.problems import demonstration_set, stack_problems
from jaxrl_reason.run.agent import Agent
from jaxrl_reason.run.sampling import sample_responses


def sft_batch(
    data: dict[str, np.ndarray], step: int, batch_size: int, seed: int, bucket_widths: tuple[int, ...] = ()
) -> dict[str, np.ndarray]:
    """The SFT batch of `step`: a deterministic function of (seed, step), epoch-wise shuffled.

    With `bucket_widths` (token widths, increasing) each batch holds examples of one length bucket only (an
    example goes to the narrowest width that holds its ``length``; the rest to the full width), trimmed to
    that width: short examples stop paying for the longest one's padding. Each width compiles the update
    once. Within an epoch every bucket is shuffled and cut into whole batches (a bucket's remainder waits
    for a later epoch's shuffle), and the batches are shuffled.
    """
    if not bucket_widths:
        n = data["tokens"].shape[0]
        j = np.arange(step * batch_size, (step + 1) * batch_size)
        epochs, pos = j // n, j % n
        idx = np.empty_like(j)
        for e in np.unique(epochs):
            perm = np.random.default_rng([seed, int(e)]).permutation(n)
            idx[epochs == e] = perm[pos[epochs == e]]
        return {k: v[idx] for k, v in data.items()}
    per_epoch, batches = _bucketed_epoch(
        data["length"], batch_size, seed, tuple(bucket_widths), data["tokens"].shape[1]
    )
    epoch, k = divmod(step, per_epoch)
    idx, width = batches(epoch)[k]
    return {key: _trim(key, v[idx], width) for key, v in data.items()}


def _trim(key: str, v: np.ndarray, width: int) -> np.ndarray:
    if key in ("tokens", "written"):
        return v[:, :width]
    if key == "teacher_log_probs":  # [N, L-1, A]: predictions of tokens 1..L-1
        return v[:, : width - 1]
    return v


def _bucketed_epoch(lengths: np.ndarray, batch_size: int, seed: int, widths: tuple[int, ...], full: int):
    """``(batches per epoch, batches)``, ``batches(epoch) -> [(indices, width), ...]`` the length-bucketed batches
    of an epoch, shuffled."""
    edges = [w for w in widths if w < full] + [full]
    if list(edges) != sorted(set(edges)) or edges[0] < 2:
        raise ValueError(f"sft.bucket_widths must be increasing widths >= 2, got {widths}")
    bucket = np.searchsorted(np.asarray(edges), lengths)  # narrowest width >= length
    members = [np.flatnonzero(bucket == b) for b in range(len(edges))]
    per_epoch = sum(len(m) // batch_size for m in members)
    if per_epoch == 0:
        raise ValueError(f"no length bucket of {list(edges)} holds a whole batch of {batch_size} examples")

    def batches(epoch: int) -> list[tuple[np.ndarray, int]]:
        out = []
        for b, m in enumerate(members):
            perm = np.random.default_rng([seed, epoch, b]).permutation(m)
            out += [(perm[i : i + batch_size], edges[b]) for i in range(0, len(m) - batch_size + 1, batch_size)]
        order = np.random.default_rng([seed, epoch, len(edges)]).permutation(len(out))
        return [out[i] for i in order]

    return per_epoch, batches


def build_update(model, mesh, apply_grads):
    """``update(state, batch) -> (state, metrics)``: one step of SFT (or distillation, when the batch holds
    ``teacher_log_probs``)."""

    def update(state, batch):
        batch = parallel.constrain_batch(batch, mesh)

        def loss_fn(params):
            logits, _ = model.apply(params, batch["tokens"])
            if "teacher_log_probs" in batch:  # distillation, logits mode
                return distill_loss(logits, batch)
            return sft_loss(logits, batch["tokens"], batch["prompt_length"], batch["length"], batch.get("written"))

        return apply_grads(state, loss_fn)

    return update


def imitation_data(config, env, model, problem_dicts: list[dict]) -> dict[str, np.ndarray]:
    """The imitation phase's data: a teacher's samples (``distill.teacher_workdir``) or demonstrations."""
    if config.distill.teacher_workdir:
        return distillation_set(config, env, model, problem_dicts)
    problem_dicts = demonstrated_problems(env, problem_dicts, config.sft.get("demo_max_tokens", 0))
    return with_written(env, demonstration_set(env, problem_dicts), problem_dicts)


def demonstrated_problems(env, problem_dicts: list[dict], max_tokens: int) -> list[dict]:
    """The problems whose demonstration takes at most `max_tokens` tokens (``sft.demo_max_tokens``; 0: all): a
    teacher that gives up on the others. ValueError when it demonstrates none."""
    if not max_tokens:
        return problem_dicts
    kept = [d for d in problem_dicts if len(env.tokenizer.encode(env.demonstration(d))) <= max_tokens]
    if not kept:
        raise ValueError(f"no demonstration of the {len(problem_dicts)} problems fits sft.demo_max_tokens={max_tokens}")
    n, total = len(kept), len(problem_dicts)
    print(f"imitation: {n} of {total} problems demonstrated within {max_tokens} tokens", flush=True)
    return kept


def with_written(env, data: dict[str, np.ndarray], problem_dicts: list[dict]) -> dict[str, np.ndarray]:
    """`data` (``tokens``, ``prompt_length``, ``length`` answering `problem_dicts`, row for row) plus
    ``written [N, L]``, the tokens the env writes (replayed through it), when ``env.writes_tokens``; else `data`."""
    if not env.writes_tokens:
        return data
    replay = jax.jit(functools.partial(replay_written, env))
    written = replay(stack_problems(env, problem_dicts), data["tokens"], data["prompt_length"], data["length"])
    return {**data, "written": np.asarray(written)}


def distillation_set(config, env, model, problem_dicts: list[dict]) -> dict[str, np.ndarray]:
    """The SFT data of a distillation warm start (``config.distill``), in the layout of
    :func:`jaxrl_reason.problems.demonstration_set` (plus ``teacher_log_probs`` in logits mode)."""
    d = config.distill
    teacher = Agent.load(d.teacher_workdir)
    if teacher.env.spec.env_id != env.spec.env_id or teacher.env.spec.max_length != env.spec.max_length:
        raise ValueError(
            f"teacher run {d.teacher_workdir!r} is on {teacher.env.spec.env_id} (max_length "
            f"{teacher.env.spec.max_length}), the student on {env.spec.env_id} (max_length {env.spec.max_length})"
        )
    del model  # the student's model only consumes the data
    key = jax.random.fold_in(jax.random.PRNGKey(config.seed), 303)
    data = sample_responses(
        teacher,
        env,
        problem_dicts,
        key,
        temperature=d.temperature,
        samples_per_problem=d.samples_per_problem,
        with_logits=d.mode == "logits",
    )
    keep = data["reward"] == 1.0 if d.keep == "correct" else np.ones_like(data["reward"], bool)
    if not keep.any():
        raise ValueError(
            f"the teacher in {d.teacher_workdir!r} solved none of {len(keep)} sampled problems; use "
            "distill.keep=all or a better teacher"
        )
    data = {k: v[keep] for k, v in data.items() if k != "reward"}
    data["prompt_length"] = data["prompt_length"].astype(np.int32)
    data["length"] = data["length"].astype(np.int32)
    return data
