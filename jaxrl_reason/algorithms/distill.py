"""Distillation: a student learns from a teacher run's samples (sequence level) or its logits (token level).

Used by the training loop as a warm start in place of the task's demonstrations
(``config.distill.teacher_workdir``): the teacher (any earlier run on the same env; its model may be
larger) samples responses to the run's SFT problems with :func:`jr.rollout`, once, deterministically
from the run's seed, then the SFT phase trains on them:

* ``mode="sequence"``: cross-entropy on the teacher's sampled responses (``keep="correct"`` keeps only
  those the verifier accepts — rejection-sampling distillation; ``"all"`` keeps every sample);
* ``mode="logits"``: per-token ``KL(teacher || student)`` over the full teacher distribution at every
  response position of the teacher's samples (``keep`` filters the same way).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxrl_reason.algorithms.common import masked_mean
from jaxrl_reason.algorithms.sft import response_targets
from jaxrl_reason.data import stack_problems
from jaxrl_reason.types import Array

_SAMPLE_BATCH = 256


def distill_loss(logits: Array, batch: dict) -> tuple[Array, dict]:
    """Token-level ``KL(teacher || student)`` averaged over response positions.

    Args:
      logits: ``[B, L, A]`` the student's full forward of ``batch["tokens"]``.
      batch: ``tokens [B, L]``, ``prompt_length [B]``, ``length [B]`` and ``teacher_log_probs [B, L-1, A]``
        (the teacher's log-softmax at positions ``0 .. L-2``, i.e. predicting tokens ``1 .. L-1``).
    Returns:
      ``(loss, metrics)``; metrics hold ``token_accuracy`` (student argmax == sampled token).
    """
    targets, mask = response_targets(batch["tokens"], batch["prompt_length"], batch["length"])
    log_q = jax.nn.log_softmax(logits[:, :-1].astype(jnp.float32), axis=-1)
    log_p = batch["teacher_log_probs"].astype(jnp.float32)
    p = jnp.exp(log_p)
    kl = (p * (jnp.where(p > 0, log_p, 0.0) - jnp.where(p > 0, log_q, 0.0))).sum(-1)
    loss = masked_mean(kl, mask)
    acc = masked_mean((log_q.argmax(-1) == targets).astype(jnp.float32), mask)
    return loss, {"loss": loss, "token_accuracy": acc}


def teacher_samples(
    teacher,
    env,
    problem_dicts: list[dict],
    key: jax.Array,
    *,
    temperature: float = 1.0,
    samples_per_problem: int = 1,
    with_logits: bool = False,
) -> dict[str, np.ndarray]:
    """Samples of ``teacher`` (a :class:`jr.Agent`) on the problems: numpy ``tokens [N, L]``, ``prompt_length``,
    ``length``, ``reward [N]`` (and ``teacher_log_probs [N, L-1, A]`` with ``with_logits``),
    ``N = len(problem_dicts) * samples_per_problem``. Deterministic given `key`."""
    model = teacher.model
    if model.config.num_actions != env.spec.num_actions or model.config.max_length < env.spec.max_length:
        raise ValueError(
            f"teacher model (num_actions={model.config.num_actions}, max_length={model.config.max_length}) does "
            f"not fit env {env.spec.env_id} (num_actions={env.spec.num_actions}, max_length={env.spec.max_length})"
        )

    fn = _sampler(model, env, float(temperature), bool(with_logits))
    dicts = [d for d in problem_dicts for _ in range(samples_per_problem)]
    chunks = []
    for start in range(0, len(dicts), _SAMPLE_BATCH):
        chunk = dicts[start : start + _SAMPLE_BATCH]
        padded = chunk + [chunk[-1]] * (_SAMPLE_BATCH - len(chunk))
        states = jax.vmap(env.init_from_problem)(stack_problems(env, padded))
        out = jax.device_get(fn(teacher.params, states, jax.random.fold_in(key, start)))
        chunks.append({k: np.asarray(v)[: len(chunk)] for k, v in out.items()})
    return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}


@functools.lru_cache(maxsize=8)
def _sampler(model, env, temperature: float, with_logits: bool):
    """The jitted sampling function of a (model, env, setting), compiled once per process."""
    from jaxrl_reason.models import rollout

    def sample(params, states, key):
        traj = rollout(model, params, env, states, key, temperature=temperature)
        out = {
            "tokens": traj.tokens,
            "prompt_length": traj.prompt_length,
            "length": traj.final_state.length,
            "reward": traj.returns[:, 0],
        }
        if with_logits:
            logits, _ = model.apply(params, traj.tokens)
            out["teacher_log_probs"] = jax.nn.log_softmax(logits[:, :-1].astype(jnp.float32), axis=-1)
        return out

    return jax.jit(sample)


def distillation_set(config, env, model, problem_dicts: list[dict]) -> dict[str, np.ndarray]:
    """The SFT data of a distillation warm start (``config.distill``), in the layout of
    :func:`jaxrl_reason.data.demonstration_set` (plus ``teacher_log_probs`` in logits mode)."""
    from jaxrl_reason.evaluation import Agent

    d = config.distill
    teacher = Agent.load(d.teacher_workdir)
    if teacher.env.spec.env_id != env.spec.env_id or teacher.env.spec.max_length != env.spec.max_length:
        raise ValueError(
            f"teacher run {d.teacher_workdir!r} is on {teacher.env.spec.env_id} (max_length "
            f"{teacher.env.spec.max_length}), the student on {env.spec.env_id} (max_length {env.spec.max_length})"
        )
    del model  # the student's model only consumes the data
    key = jax.random.fold_in(jax.random.PRNGKey(config.seed), 303)
    data = teacher_samples(
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
