"""The imitation phase of a run: SFT on worked solutions or distillation from a teacher run.

Its data is built once on the host (:func:`imitation_data`); step ``s`` trains on batch
:func:`sft_batch` ``(data, s)``, a deterministic function of ``(seed, s)``, so a resumed run sees the same
batches as one that never stopped.
"""

from __future__ import annotations

import jax
import numpy as np

from jaxrl_reason import parallel
from jaxrl_reason.algorithms.distill import distill_loss
from jaxrl_reason.algorithms.sft import sft_loss
from jaxrl_reason.problems import demonstration_set
from jaxrl_reason.run.agent import Agent
from jaxrl_reason.run.sampling import sample_responses


def sft_batch(data: dict[str, np.ndarray], step: int, batch_size: int, seed: int) -> dict[str, np.ndarray]:
    """The SFT batch of `step`: a deterministic function of (seed, step), epoch-wise shuffled."""
    n = data["tokens"].shape[0]
    j = np.arange(step * batch_size, (step + 1) * batch_size)
    epochs, pos = j // n, j % n
    idx = np.empty_like(j)
    for e in np.unique(epochs):
        perm = np.random.default_rng([seed, int(e)]).permutation(n)
        idx[epochs == e] = perm[pos[epochs == e]]
    return {k: v[idx] for k, v in data.items()}


def build_update(model, mesh, apply_grads):
    """``update(state, batch) -> (state, metrics)``: one step of SFT (or distillation, when the batch holds
    ``teacher_log_probs``)."""

    def update(state, batch):
        batch = parallel.constrain_batch(batch, mesh)

        def loss_fn(params):
            logits, _ = model.apply(params, batch["tokens"])
            if "teacher_log_probs" in batch:  # distillation, logits mode
                return distill_loss(logits, batch)
            return sft_loss(logits, batch["tokens"], batch["prompt_length"], batch["length"])

        return apply_grads(state, loss_fn)

    return update


def imitation_data(config, env, model, problem_dicts: list[dict]) -> dict[str, np.ndarray]:
    """The imitation phase's data: a teacher's samples (``distill.teacher_workdir``) or demonstrations."""
    if config.distill.teacher_workdir:
        return distillation_set(config, env, model, problem_dicts)
    return demonstration_set(env, problem_dicts)


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
