"""Test-time compute sweep: accuracy of every decoding method against the compute it spends.

    python -m jaxrl_reason.evaluate --workdir DIR --sweep [--mcts_sims 1,2,4,...] [--best_of_n 2,4,8]

Runs :func:`jr.decode` with each method over the run's held-out problems: greedy; best-of-N with
majority vote, ORM (value head at the end) and, when a PRM is found (``<workdir>/prm``, see
:mod:`jaxrl_reason.prm_training`), PRM-weighted (min over prefixes); token-level beam search and, for
tasks whose steps end with ``","``, step-level beam search, both scored by the PRM (or by the value head
without one); lookahead; MCTS with each simulation budget (Gumbel noise off by default: the test-time
search is deterministic and 1 simulation plays the policy's argmax; Q rescaling as the run's
``selfplay.rescale_values``). Writes
``<workdir>/ttc_sweep.csv`` (one row per method and budget) and ``<workdir>/ttc_sweep.png`` (accuracy
against FLOPs and against generated tokens, log x). Tokens and FLOPs per problem are jr.decode's
counts; a separate PRM's forwards are added to them (it is a network of the policy's size).
"""

from __future__ import annotations

import csv
import json
import os
import time

import jax
import numpy as np

from jaxrl_reason.evaluation.heldout import thinking_budget_env
from jaxrl_reason.models.flops import forward_flops
from jaxrl_reason.models.prm import PolicyWithPRM
from jaxrl_reason.problems import heldout_problems, initial_states, padded_chunks
from jaxrl_reason.run.agent import Agent
from jaxrl_reason.run.prm_io import load_prm
from jaxrl_reason.search.decoding import decode, value_prm, verifier_allowed

COLUMNS = (
    "method",
    "selection",
    "budget",
    "accuracy",
    "tokens_per_problem",
    "flops_per_problem",
    "num_problems",
    "with_verifier",
    "wall_s",
)
DEFAULT_MCTS_SIMS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
DEFAULT_BEST_OF_N = (2, 4, 8, 16)
DEFAULT_BEAM_WIDTHS = (2, 4, 8)
DEFAULT_STEP_BEAM_WIDTHS = (2, 4)
DEFAULT_LOOKAHEAD = ((2, 2), (4, 2))


def sweep_specs(
    *,
    mcts_sims=DEFAULT_MCTS_SIMS,
    best_of_n=DEFAULT_BEST_OF_N,
    beam_widths=DEFAULT_BEAM_WIDTHS,
    step_beam_widths=DEFAULT_STEP_BEAM_WIDTHS,
    lookahead=DEFAULT_LOOKAHEAD,
    with_prm: bool = False,
    with_verifier: bool = False,
    mcts_algorithm: str = "gumbel",
    mcts_gumbel_scale: float = 0.0,
    mcts_rescale_values: bool | None = None,
    step_id: int | None = None,
    step_mcts_sims=(),
    step_mcts_candidates: int = 8,
    step_mcts_step_length: int = 12,
):
    """The list of ``(method, selection, budget, decode kwargs)`` a sweep runs (step-level beams and step
    MCTS only with a ``step_id``, i.e. on one-player tasks with a tokenizer; step MCTS ends steps at the
    tokenizer's separators and answer marker, ``jr.search.default_step_ids``; best-of-N picked by the verifier
    only ``with_verifier``, for tasks that allow it)."""
    specs = [("greedy", "", 1, {})]
    for n in best_of_n:
        for sel in ("majority", "orm") + (("prm",) if with_prm else ()) + (("verifier",) if with_verifier else ()):
            specs.append(("best_of_n", sel, n, {"n": n, "selection": sel}))
    for w in beam_widths:
        specs.append(("beam", "prm" if with_prm else "value", w, {"beam_width": w, "expand": w}))
    for w in step_beam_widths if step_id is not None else ():
        kw = {"beam_width": w, "expand": w, "step_id": step_id}
        specs.append(("step_beam", "prm" if with_prm else "value", w, kw))
    for w, d in lookahead:
        specs.append(("lookahead", f"depth{d}", w, {"width": w, "depth": d}))
    for s in mcts_sims:
        kw = {"num_simulations": s, "algorithm": mcts_algorithm}
        if mcts_algorithm == "gumbel":
            kw["gumbel_scale"] = mcts_gumbel_scale
        if mcts_rescale_values is not None:
            kw["rescale_values"] = mcts_rescale_values
        specs.append(("mcts", mcts_algorithm, s, kw))
    for s in step_mcts_sims if step_id is not None else ():
        kw = {"num_simulations": s, "num_candidates": step_mcts_candidates, "max_step_length": step_mcts_step_length}
        kw["algorithm"] = mcts_algorithm
        if mcts_algorithm == "gumbel":
            kw["gumbel_scale"] = mcts_gumbel_scale
        if mcts_rescale_values is not None:
            kw["rescale_values"] = mcts_rescale_values
        specs.append(("step_mcts", mcts_algorithm, s, kw))
    return specs


def run_method(
    agent,
    problems: list[dict],
    method: str,
    kwargs: dict,
    *,
    prm=None,
    batch_size: int = 64,
    seed: int = 0,
    env=None,
) -> dict:
    """Accuracy, tokens and FLOPs per problem of one decoding method (one compile, padded batches), on `env`
    (default: the agent's; e.g. :func:`~jaxrl_reason.evaluation.heldout.thinking_budget_env`)."""
    env, model, params = env or agent.env, agent.model, agent.params
    kwargs = dict(kwargs)
    extra_flops = 0.0
    seq = env.spec.max_length
    if prm == "value_head":  # the agent's own value head is the PRM: decode's defaults and FLOP counts
        prm = None
    elif prm is not None and kwargs.get("selection") == "prm":
        kwargs["prm_fn"] = value_prm(*prm)
        extra_flops = kwargs["n"] * forward_flops(prm[0].config, 1, seq)
    method = "beam" if method == "step_beam" else method  # the sweep's name for beam with step_id
    if method == "beam" and prm is not None:
        model, params = PolicyWithPRM(model, prm[0]), (params, prm[1])
        double = True  # every beam forward runs the policy and the PRM
    else:
        double = False
    fn = jax.jit(lambda p, s, k: decode(model, p, env, s, k, method=method, **kwargs))
    correct, tokens, flops, with_verifier = [], [], [], False
    t0 = time.time()
    for start, n, padded in padded_chunks(problems, batch_size):
        out = jax.device_get(
            fn(params, initial_states(env, padded), jax.random.fold_in(jax.random.PRNGKey(seed), start))
        )
        with_verifier = out.with_verifier
        correct.append(np.asarray(out.returns)[:n, 0] == 1.0)
        tokens.append(np.asarray(out.tokens_generated)[:n])
        flops.append(np.asarray(out.flops, np.float64)[:n] * (2 if double else 1) + extra_flops)
    return {
        "accuracy": float(np.concatenate(correct).mean()),
        "tokens_per_problem": float(np.concatenate(tokens).mean()),
        "flops_per_problem": float(np.concatenate(flops).mean()),
        "num_problems": len(problems),
        "with_verifier": with_verifier,
        "wall_s": round(time.time() - t0, 2),
    }


def sweep(
    agent,
    problems: list[dict],
    out_dir: str,
    *,
    prm=None,
    batch_size: int = 64,
    seed: int = 0,
    progress: bool = True,
    thinking_budgets: tuple[int, ...] = (),
    **spec_kwargs,
) -> list[dict]:
    """Runs every method of :func:`sweep_specs`; ``prm``: None, ``(model, params)`` of a separate PRM, or
    ``"value_head"`` (the agent's value head is the PRM: ORM, PRM selection, beam and MCTS all use it).
    ``thinking_budgets``: greedy decoding with responses cut at each number of tokens (method ``"greedy"``,
    selection ``"thinking"``, budget = the token limit). Writes ``ttc_sweep.csv`` and ``ttc_sweep.png``."""
    rows = []
    os.makedirs(out_dir, exist_ok=True)
    csv_path = os.path.join(out_dir, "ttc_sweep.csv")
    with open(csv_path, "w", newline="") as f:
        csv.DictWriter(f, fieldnames=COLUMNS).writeheader()
    tok = getattr(agent.env, "tokenizer", None)
    if agent.env.spec.num_players == 1 and tok is not None and "step_id" not in spec_kwargs:
        spec_kwargs["step_id"] = tok.id_of(",")  # reasoning steps end with "," (jaxrl_reason.algorithms.prm)
    if spec_kwargs.get("mcts_rescale_values") is None:
        spec_kwargs["mcts_rescale_values"] = agent.search.rescale_values  # search as the run searched in self-play
    specs = [("greedy", "thinking", b, {}) for b in thinking_budgets]
    spec_kwargs.setdefault("with_verifier", verifier_allowed(agent.env))
    specs += sweep_specs(with_prm=prm is not None, **spec_kwargs)
    for method, selection, budget, kwargs in specs:
        env = thinking_budget_env(agent, budget) if selection == "thinking" else None
        res = run_method(agent, problems, method, kwargs, prm=prm, batch_size=batch_size, seed=seed, env=env)
        rows.append({"method": method, "selection": selection, "budget": budget, **res})
        with open(csv_path, "a", newline="") as f:  # row by row: a long sweep cut short keeps its rows
            csv.DictWriter(f, fieldnames=COLUMNS).writerow(rows[-1])
        if progress:
            print(
                f"{method:10s} {selection:9s} {budget:4d}  acc {res['accuracy']:.3f}  tokens "
                f"{res['tokens_per_problem']:.0f}  GFLOPs {res['flops_per_problem'] / 1e9:.3f}  {res['wall_s']} s",
                flush=True,
            )
    plot_sweep(rows, os.path.join(out_dir, "ttc_sweep.png"))
    return rows


def plot_sweep(rows: list[dict], path: str, title: str = "") -> str:
    """Accuracy against FLOPs and against generated tokens per problem (log x), one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    groups: dict[str, list[dict]] = {}
    for r in rows:
        verifier = " (with verifier)" if r.get("with_verifier") in (True, "True") else ""
        groups.setdefault(f"{r['method']} {r['selection']}".strip() + verifier, []).append(r)
    for ax, x, label in (
        (axes[0], "flops_per_problem", "FLOPs per problem"),
        (axes[1], "tokens_per_problem", "tokens generated per problem"),
    ):
        for name, g in groups.items():
            g = sorted(g, key=lambda r: r[x])
            ax.plot([max(r[x], 1.0) for r in g], [r["accuracy"] for r in g], marker="o", label=name)
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("held-out accuracy")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def sweep_workdir(
    workdir: str,
    *,
    num_problems: int | None = None,
    prm_dir: str | None = None,
    batch_size: int | None = None,
    out_dir: str | None = None,
    **spec_kwargs,
) -> list[dict]:
    """The CLI's sweep: the latest checkpoint of `workdir` on its held-out problems; PRM from ``prm_dir``
    (default ``<workdir>/prm`` when it exists)."""
    agent = Agent.load(workdir)
    problems = heldout_problems(agent.env, agent.config)
    if num_problems:
        problems = problems[:num_problems]
    prm_dir = prm_dir or os.path.join(workdir, "prm")
    prm = load_prm(prm_dir) if os.path.isfile(os.path.join(prm_dir, "model.json")) else None
    report = os.path.join(prm_dir, "report.json")
    if prm is not None and os.path.isfile(report):
        with open(report) as f:
            head_only = json.load(f).get("prm_head_only", False)
        if head_only:  # the same policy with a trained value head: it becomes the agent's network
            agent.params, prm = prm[1], "value_head"
    return sweep(
        agent,
        problems,
        out_dir or workdir,
        prm=prm,
        batch_size=batch_size or min(64, len(problems)),
        seed=agent.config.seed,
        **spec_kwargs,
    )
