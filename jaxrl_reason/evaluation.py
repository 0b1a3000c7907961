"""Held-out evaluation and the playable :class:`Agent`.

    python -m jaxrl_reason.evaluate --workdir DIR [--method greedy|sample|mcts] [--num_simulations N]
        [--tfds_name NAME --tfds_data_dir DIR [--tfds_split test]]

prints JSON metrics of the latest checkpoint on the run's held-out problems (the same set the
training loop evaluates on: sampled from the run's seed, disjoint from its demonstration set, or the
run's ``eval.tfds_name`` dataset), or on a TFDS problem set given on the command line
(:mod:`jaxrl_reason.datasets`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxrl_reason import parallel
from jaxrl_reason.checkpoint import Checkpointer
from jaxrl_reason.config import saved_config
from jaxrl_reason.data import run_problem_sets, stack_problems
from jaxrl_reason.envs.registry import make
from jaxrl_reason.models import PolicyValueTransformer, TransformerConfig, rollout
from jaxrl_reason.selfplay import selfplay
from jaxrl_reason.types import EnvState

METHODS = ("greedy", "sample", "mcts")


@dataclasses.dataclass
class Agent:
    """A trained policy-value network bound to its env, ready to act on batches of states."""

    model: PolicyValueTransformer
    params: Any
    env: Any
    config: Any = None
    #: a ``jax.sharding.Mesh``: :meth:`act` and :func:`evaluate` split the batch over its devices (one
    #: search or rollout per example, ``parallel.map_examples``); None: the default device
    mesh: Any = None
    _jitted: dict = dataclasses.field(default_factory=dict, repr=False)

    @classmethod
    def load(cls, workdir: str, *, step: int | None = None, mesh=None) -> Agent:
        """Restores params, model config and env from a run's checkpoint (default: the latest); `mesh`: see
        :attr:`mesh` (e.g. ``jr.make_mesh()`` for all devices)."""
        from jaxrl_reason.training import build_optimizer, init_state  # the state layout lives there

        with Checkpointer(workdir) as ckpt:
            meta = ckpt.restore_meta(step)
            config = saved_config(meta["config"])
            env = make(meta["env_id"], **meta["env_kwargs"])
            model = PolicyValueTransformer(TransformerConfig(**meta["model"]))
            abstract = jax.eval_shape(lambda: init_state(config, env, model, build_optimizer(config)))
            # restore onto this machine's devices, whatever mesh/processes the run was saved from
            rep = parallel.replicated(parallel.make_mesh(-1, 1))
            abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=rep), abstract)
            state, _ = ckpt.restore(abstract, step)
        return cls(model=model, params=state.params, env=env, config=config, mesh=mesh)

    def act(
        self,
        key: jax.Array,
        states: EnvState,
        *,
        method: str = "mcts",
        num_simulations: int = 32,
        top_k: int = 16,
        temperature: float = 0.0,
        rescale_values: bool | None = None,
        rollouts: int = 0,
        rollout_weight: float = 0.5,
        max_depth: int = 6,
        algorithm: str = "gumbel",
    ) -> jax.Array:
        """Actions ``[B]`` for a batch of states: search (``"mcts"``), ``"greedy"`` or ``"sample"``.

        `rescale_values` (MCTS Q rescaling, see :func:`jaxrl_reason.mcts_policy`) defaults to the
        setting the agent was trained with. `rollouts` / `rollout_weight`: random playouts mixed into
        each leaf's value (board games); `max_depth`: the search tree's depth bound; `algorithm`:
        ``"gumbel"`` or ``"muzero"`` (PUCT; greedy play then takes the most visited move). See
        :func:`jaxrl_reason.mcts_policy`.
        """
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        if rescale_values is None:
            rescale_values = self.rescale_values
        search = dict(
            num_simulations=num_simulations,
            top_k=top_k,
            rescale_values=rescale_values,
            rollouts=rollouts,
            rollout_weight=rollout_weight,
            max_depth=max_depth,
            algorithm=algorithm,
        )
        options = tuple(search.items()) if method == "mcts" else ()  # only a search has options
        fn = self._fn(("act", method, temperature, options, self.mesh), self._make_act, method, temperature, options)
        return fn(self.params, states, key)

    @property
    def rescale_values(self) -> bool:
        """The MCTS Q-rescaling setting of the agent's training run (mctx's default, True, without one)."""
        if self.config is None or "selfplay" not in self.config:
            return True
        return bool(self.config.selfplay.get("rescale_values", True))

    def _make_act(self, method, temperature, options):
        from jaxrl_reason.search import mcts_policy

        model, env = self.model, self.env

        def act_one(params, state, key):  # one example: a search or a forward of batch 1
            states = jax.tree.map(lambda x: x[None], state)
            if method == "mcts":
                out = mcts_policy(model, params, env, states, key, **dict(options))
                action = out.action if temperature else jnp.argmax(out.action_weights, -1)
                return action[0].astype(jnp.int32)
            pos = states.length - 1
            logits, _ = model.apply(params, states.tokens)
            logits = jnp.take_along_axis(logits, pos[:, None, None], 1)[0, 0]
            logits = jnp.where(state.legal_action_mask, logits, -jnp.inf)
            if method == "greedy":
                return jnp.argmax(logits, -1).astype(jnp.int32)
            scaled = logits / max(temperature, 1e-6) if temperature else logits
            return jax.random.categorical(key, scaled).astype(jnp.int32)

        mesh = self.mesh

        def act(params, states, key):
            keys = jax.random.split(key, states.length.shape[0])  # per example: the same on any mesh
            return _gathered(parallel.map_examples(act_one, mesh, params, states, keys), mesh)

        return jax.jit(act)

    def _fn(self, cache_key, factory, *args):
        if cache_key not in self._jitted:
            self._jitted[cache_key] = factory(*args)
        return self._jitted[cache_key]


def evaluate(
    agent: Agent,
    env,
    problems: list[dict],
    *,
    method: str = "greedy",
    num_simulations: int = 16,
    top_k: int = 16,
    batch_size: int = 256,
    seed: int = 0,
    rescale_values: bool | None = None,
    mesh=None,
) -> dict:
    """Accuracy of `agent` on reasoning `problems` (dicts), solved with `method`.

    Problems are solved in padded batches of `batch_size` (one compile), each problem with its own key and,
    with a `mesh` (default: the agent's), on its share of the devices: results do not depend on the mesh.
    MCTS uses the agent's training setting of `rescale_values` unless given. Returns ``accuracy``
    (mean verifier reward), ``num_problems``, ``mean_response_tokens``, ``tokens_generated``,
    ``method`` (and ``num_simulations`` for MCTS).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if not problems:
        raise ValueError("evaluate() needs at least one problem")
    rescale = agent.rescale_values if rescale_values is None else rescale_values
    mesh = agent.mesh if mesh is None else mesh
    fn = agent._fn(
        ("solve", method, num_simulations, top_k, rescale, mesh),
        _make_solver,
        agent.model,
        env,
        method,
        num_simulations,
        top_k,
        rescale,
        mesh,
    )
    rewards, lengths = [], []
    for start in range(0, len(problems), batch_size):
        chunk = problems[start : start + batch_size]
        padded = chunk + [chunk[-1]] * (batch_size - len(chunk))
        states = jax.vmap(env.init_from_problem)(stack_problems(env, padded))
        key = jax.random.fold_in(jax.random.PRNGKey(seed), start)
        final = jax.device_get(fn(agent.params, states, key))
        n = len(chunk)
        rewards.append(np.asarray(final.rewards)[:n, 0])
        lengths.append(np.asarray(final.length - final.prompt_length)[:n])
    rewards, lengths = np.concatenate(rewards), np.concatenate(lengths)
    out = {
        "accuracy": float((rewards == 1.0).mean()),
        "mean_reward": float(rewards.mean()),
        "num_problems": len(problems),
        "mean_response_tokens": float(lengths.mean()),
        "tokens_generated": int(lengths.sum()),
        "method": method,
    }
    if method == "mcts":
        out["num_simulations"] = num_simulations
    return out


def _gathered(tree, mesh):
    """Results replicated on every device of `mesh` (every process can read them; they are small)."""
    if mesh is None:
        return tree
    return jax.lax.with_sharding_constraint(tree, parallel.replicated(mesh))


def _make_solver(model, env, method, num_simulations, top_k, rescale_values, mesh=None):
    def solve_one(params, state, key):  # one problem: its own search or rollout
        states = jax.tree.map(lambda x: x[None], state)
        if method == "mcts":
            traj = selfplay(
                model,
                params,
                env,
                states,
                key,
                num_simulations=num_simulations,
                top_k=top_k,
                temperature=0.0,
                rescale_values=rescale_values,
            )
        else:
            traj = rollout(model, params, env, states, key, greedy=method == "greedy")
        # report the reward the episode ended with (rewards of the final transition are in the trajectory)
        final = traj.final_state.replace(rewards=traj.returns)
        return jax.tree.map(lambda x: x[0], final)

    def solve(params, states, key):
        keys = jax.random.split(key, states.length.shape[0])
        return _gathered(parallel.map_examples(solve_one, mesh, params, states, keys), mesh)

    return jax.jit(solve)


def heldout_problems(env, config) -> list[dict]:
    """The held-out problem set of a run (the same set the training loop evaluates on): the TFDS dataset
    ``eval.tfds_name`` if the config names one, else sampled from the seed."""
    if config.eval.get("tfds_name"):
        from jaxrl_reason.datasets import read_problems

        return read_problems(
            config.eval.tfds_name, data_dir=config.eval.tfds_data_dir, split=config.eval.get("tfds_split", "test")
        )
    return run_problem_sets(env, config.seed, config.sft.num_examples, config.eval.num_problems)[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jaxrl_reason.evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--method", choices=METHODS, default=None, help="default: the run's eval.method")
    parser.add_argument("--num_simulations", type=int, default=None)
    parser.add_argument("--num_problems", type=int, default=None)
    parser.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
    parser.add_argument("--sweep", action="store_true", help="test-time compute sweep -> ttc_sweep.csv/png")
    parser.add_argument("--mcts_sims", default="1,2,4,8,16,32,64,128,256", help="sweep: MCTS budgets")
    parser.add_argument("--best_of_n", default="2,4,8,16", help="sweep: best-of-N sizes")
    parser.add_argument("--beam_widths", default="2,4,8", help="sweep: token-level beam widths")
    parser.add_argument(
        "--step_beam_widths", default="2,4", help="sweep: step-level (PRM) beam widths, tasks with ',' steps"
    )
    parser.add_argument("--lookahead", default="2x2,4x2", help="sweep: lookahead WIDTHxDEPTH list")
    parser.add_argument("--mcts_algorithm", default="gumbel", choices=("gumbel", "muzero"))
    parser.add_argument(
        "--mcts_gumbel_scale",
        type=float,
        default=0.0,
        help="sweep: Gumbel noise of the test-time search (0: deterministic, 1 simulation = greedy)",
    )
    parser.add_argument("--prm_dir", default=None, help="sweep: PRM directory (default <workdir>/prm)")
    parser.add_argument("--out_dir", default=None, help="sweep: where the CSV/PNG go (default <workdir>)")
    parser.add_argument("--tfds_name", default=None, help="evaluate on this TFDS problem set (jaxrl_reason.datasets)")
    parser.add_argument("--tfds_data_dir", default=None, help="directory of the TFDS dataset")
    parser.add_argument("--tfds_split", default="test")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.sweep:
        from jaxrl_reason.ttc import sweep_workdir

        ints = lambda text: tuple(int(x) for x in text.split(",") if x)  # noqa: E731
        sweep_workdir(
            args.workdir,
            num_problems=args.num_problems,
            prm_dir=args.prm_dir,
            out_dir=args.out_dir,
            mcts_sims=ints(args.mcts_sims),
            best_of_n=ints(args.best_of_n),
            beam_widths=ints(args.beam_widths),
            step_beam_widths=ints(args.step_beam_widths),
            lookahead=tuple(tuple(int(v) for v in x.split("x")) for x in args.lookahead.split(",") if x),
            mcts_algorithm=args.mcts_algorithm,
            mcts_gumbel_scale=args.mcts_gumbel_scale,
        )
        print(f"wrote {args.out_dir or args.workdir}/ttc_sweep.csv and ttc_sweep.png")
        return 0
    try:
        # every device of this process gets its share of the problems (8 fake ones on a CPU-only machine)
        agent = Agent.load(args.workdir, step=args.step, mesh=parallel.make_mesh(-1, 1))
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    config = agent.config
    if args.tfds_name and not args.tfds_data_dir:
        print("error: --tfds_name needs --tfds_data_dir", file=sys.stderr)
        return 2
    if args.num_problems:
        config.eval.num_problems = args.num_problems
    if args.tfds_name:
        from jaxrl_reason.datasets import read_problems

        try:
            problems = read_problems(args.tfds_name, data_dir=args.tfds_data_dir, split=args.tfds_split)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    else:
        problems = heldout_problems(agent.env, config)
    method = args.method or config.eval.method
    sims = args.num_simulations or config.eval.num_simulations
    metrics = evaluate(
        agent,
        agent.env,
        problems,
        method=method,
        num_simulations=sims,
        batch_size=config.eval.batch_size,
        seed=config.seed,
    )
    print(json.dumps(metrics, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
