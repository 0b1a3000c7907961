"""Fit a process reward model to a trained run and measure its step-label error.

    python -m jaxrl_reason.prm_fit --workdir DIR [--num_rollouts 8] [--steps 300]   (CLI shim: prm_fit.py)

1. the run's policy samples responses to problems of its training distribution (seed-disjoint from the
   held-out set) and to held-out problems;
2. every step boundary gets a Monte-Carlo label (:func:`jaxrl_reason.algorithms.prm.mc_labels`);
3. a copy of the policy network is trained as the PRM on the training responses' labels and written to
   ``<workdir>/prm/`` (load with :func:`jaxrl_reason.algorithms.prm.load_prm`);
4. on the held-out responses, the MC labels (hard: any completion correct; soft > 0.5) and the PRM
   (value > 0, i.e. predicted label > 0.5) are compared with the exact step labels
   (:func:`jaxrl_reason.algorithms.prm.exact_step_labels`); ``<workdir>/prm/report.json`` holds the error rates.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxrl_reason.algorithms.common import value_head_only
from jaxrl_reason.algorithms.prm import mc_labels, prm_loss, prm_targets, step_boundaries
from jaxrl_reason.problems import heldout_problems, initial_states, padded_chunks, problem_key, sample_problem_dicts
from jaxrl_reason.run.agent import Agent
from jaxrl_reason.run.checkpoint import CheckpointError
from jaxrl_reason.run.prm_io import save_prm
from jaxrl_reason.run.sampling import sample_responses as _sample_responses

_CHUNK = 256


def sample_responses(agent, problems: list[dict], key, *, temperature: float = 1.0) -> dict[str, np.ndarray]:
    """One sampled response per problem: numpy ``tokens``, ``prompt_length``, ``length``, ``reward``."""
    return _sample_responses(agent, agent.env, problems, key, temperature=temperature)


def label_responses(
    agent, problems: list[dict], samples: dict, key, *, num_rollouts: int, max_steps: int, temperature: float = 1.0
):
    """MC labels of every step boundary: ``(boundaries [N, M], ok [N, M], soft [N, M])``."""
    env, tok = agent.env, agent.env.tokenizer
    bounds, ok = step_boundaries(
        samples["tokens"],
        samples["prompt_length"],
        samples["length"],
        comma_id=tok.id_of(","),
        answer_id=tok.answer_id,
        max_steps=max_steps,
    )
    n, m = bounds.shape
    rows = [(i, j) for i in range(n) for j in range(m) if ok[i, j]]  # valid boundaries only
    fn = _labeler(agent.model, env, int(num_rollouts), float(temperature))
    soft = np.zeros((n, m), np.float32)
    for start, k, padded in padded_chunks(rows, min(_CHUNK, len(rows))):
        ii = np.array([r[0] for r in padded])
        jj = np.array([r[1] for r in padded])
        init = initial_states(env, [problems[i] for i in ii])
        out = np.asarray(fn(agent.params, init, samples["tokens"][ii], bounds[ii, jj], jax.random.fold_in(key, start)))
        soft[ii[:k], jj[:k]] = out[:k]
    return bounds, ok, soft


@functools.lru_cache(maxsize=4)
def _labeler(model, env, num_rollouts: int, temperature: float):
    def fn(params, init, tokens, upto, key):
        return mc_labels(
            model, params, env, init, tokens, upto, key, num_rollouts=num_rollouts, temperature=temperature
        )

    return jax.jit(fn)


def _exact(env, problems, samples):
    tok = env.tokenizer
    out = []
    for i, d in enumerate(problems):
        p0, n = int(samples["prompt_length"][i]), int(samples["length"][i])
        ids = [int(t) for t in samples["tokens"][i, p0:n] if int(t) != tok.eos_id]
        out.append((env.step_labels(d, tok.decode(ids)), tok.answer_id in ids))
    return out


def label_errors(
    exact: list[tuple[list[bool], bool]],
    ok: np.ndarray,
    soft: np.ndarray,
    final_reward: np.ndarray,
    prm_prob: np.ndarray | None = None,
    prm_final: np.ndarray | None = None,
) -> dict:
    """Error rates against the exact labels over all steps (boundary j >= 1 is step j; the answer step is
    compared with the final label = the reward for MC, the PRM's value at the last token)."""
    rows = []  # (exact, mc_soft, prm)
    for i, (labels, has_answer) in enumerate(exact):
        valid = int(ok[i].sum())
        for j, lab in enumerate(labels):
            if has_answer and j == len(labels) - 1:  # the answer step
                rows.append((lab, float(final_reward[i]), None if prm_final is None else prm_final[i]))
            elif j + 1 < valid:
                rows.append((lab, soft[i, j + 1], None if prm_prob is None else prm_prob[i, j + 1]))
    ex = np.array([r[0] for r in rows], bool)
    mc = np.array([r[1] for r in rows], np.float32)
    out = {
        "num_steps": int(ex.size),
        "fraction_correct_steps": float(ex.mean()),
        "mc_hard_error": float(((mc > 0) != ex).mean()),
        "mc_soft_error": float(((mc > 0.5) != ex).mean()),
        "mc_soft_mae": float(np.abs(mc - ex).mean()),
    }
    if prm_prob is not None:
        pr = np.array([r[2] for r in rows], np.float32)
        out["prm_error"] = float(((pr > 0.5) != ex).mean())
        out["prm_mae"] = float(np.abs(pr - ex).mean())
        out["prm_error_on_wrong_steps"] = float((pr[~ex] > 0.5).mean()) if (~ex).any() else None
        out["prm_error_on_correct_steps"] = float((pr[ex] <= 0.5).mean()) if ex.any() else None
    return out


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


def _check_args(label: str, *counts: int) -> None:
    """Bad arguments fail at once, before any work."""
    if label not in ("hard", "soft"):
        raise ValueError(f"label must be 'hard' or 'soft', got {label!r}")
    names = ("num_train_problems", "num_eval_problems", "num_rollouts", "max_steps", "steps", "batch_size")
    for name, value in zip(names, counts, strict=True):
        if int(value) < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")


def _prm_data(samples: dict, bounds, ok, soft, *, label: str) -> dict:
    """The PRM's training arrays: tokens, per-position targets and mask (:func:`prm_targets`)."""
    targets, mask = prm_targets(
        jnp.asarray(bounds),
        jnp.asarray(ok),
        jnp.asarray(soft if label == "soft" else (soft > 0).astype(np.float32)),
        jnp.asarray(samples["reward"] == 1.0, jnp.float32),
        jnp.asarray(samples["prompt_length"]),
        jnp.asarray(samples["length"]),
        samples["tokens"].shape[1],
    )
    return {"tokens": jnp.asarray(samples["tokens"]), "targets": targets, "mask": mask}


def fit_prm(
    workdir: str,
    *,
    num_train_problems: int = 256,
    num_eval_problems: int = 128,
    num_rollouts: int = 8,
    max_steps: int = 8,
    steps: int = 300,
    batch_size: int = 64,
    learning_rate: float = 1e-3,
    temperature: float = 1.0,
    seed: int = 0,
    out_dir: str | None = None,
    label: str = "hard",
    head_only: bool = False,
) -> dict:
    """Steps 1-4 of the module docstring; returns (and writes) the report. ``label``: the PRM's training target,
    ``"hard"`` (any of the completions correct) or ``"soft"`` (fraction correct). The PRM's training problems
    exclude the run's held-out problems."""
    _check_args(label, num_train_problems, num_eval_problems, num_rollouts, max_steps, steps, batch_size)
    t0 = time.time()
    agent = Agent.load(workdir)
    env = agent.env
    key = jax.random.PRNGKey(seed)
    heldout = heldout_problems(env, agent.config)[:num_eval_problems]
    train = sample_problem_dicts(
        env, jax.random.fold_in(key, 404), num_train_problems, exclude={problem_key(d) for d in heldout}
    )
    sets = {}
    for name, probs, k in (("train", train, 1), ("eval", heldout, 2)):
        samples = sample_responses(agent, probs, jax.random.fold_in(key, 10 + k), temperature=temperature)
        labelled = label_responses(
            agent,
            probs,
            samples,
            jax.random.fold_in(key, 20 + k),
            num_rollouts=num_rollouts,
            max_steps=max_steps,
            temperature=temperature,
        )
        sets[name] = (probs, samples, *labelled)
    data = _prm_data(*sets["train"][1:], label=label)
    prm_params, losses = train_prm(
        jax.random.fold_in(key, 30),
        agent.model,
        agent.params,
        data,
        steps=steps,
        batch_size=batch_size,
        learning_rate=learning_rate,
        head_only=head_only,
    )
    out_dir = out_dir or os.path.join(workdir, "prm")
    save_prm(out_dir, agent.model, prm_params)

    probs, samples, bounds, ok, soft = sets["eval"]
    _, values = jax.jit(agent.model.apply)(prm_params, jnp.asarray(samples["tokens"]))
    prob = np.asarray(values)  # the PRM's value is the probability of a correct ending
    prm_at = np.take_along_axis(prob, bounds, axis=1)
    prm_final = prob[np.arange(prob.shape[0]), samples["length"] - 1]
    report = {
        "workdir": workdir,
        "env_id": env.spec.env_id,
        "num_train_responses": len(train),
        "num_eval_responses": len(heldout),
        "num_rollouts": num_rollouts,
        "prm_steps": steps,
        "prm_label": label,
        "prm_head_only": head_only,
        "prm_final_loss": losses[-1],
        "policy_sample_accuracy_eval": float((samples["reward"] == 1.0).mean()),
        **label_errors(_exact(env, probs, samples), ok, soft, samples["reward"] == 1.0, prm_at, prm_final),
        "wall_time_s": round(time.time() - t0, 1),
    }
    with open(os.path.join(out_dir, "report.json"), "w") as f:
        json.dump(report, f, indent=2)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jaxrl_reason.prm_fit", description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--num_train_problems", type=int, default=256)
    parser.add_argument("--num_eval_problems", type=int, default=128)
    parser.add_argument("--num_rollouts", type=int, default=8)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--label", choices=("hard", "soft"), default="hard", help="PRM training target")
    parser.add_argument("--out_dir", default=None, help="default <workdir>/prm")
    parser.add_argument("--head_only", action="store_true", help="train only the value head (policy unchanged)")
    parser.add_argument("--learning_rate", type=float, default=1e-3)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        report = _fit_from_args(args)
    except (FileNotFoundError, CheckpointError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2))
    return 0


def _fit_from_args(args) -> dict:
    return fit_prm(
        args.workdir,
        num_train_problems=args.num_train_problems,
        num_eval_problems=args.num_eval_problems,
        num_rollouts=args.num_rollouts,
        steps=args.steps,
        seed=args.seed,
        label=args.label,
        out_dir=args.out_dir,
        head_only=args.head_only,
        learning_rate=args.learning_rate,
    )
