"""Command line of held-out evaluation and the test-time compute sweep.

    python -m jaxrl_reason.evaluate --workdir DIR [--method greedy|sample|mcts] [--num_simulations N]
        [--responses FILE.jsonl] [--tfds_name NAME --tfds_data_dir DIR [--tfds_split test]] [--sweep ...]

prints JSON metrics of the latest checkpoint on the run's held-out problems (the set the training loop
evaluates on, :func:`jaxrl_reason.problems.heldout_problems`) or on a TFDS problem set. It only reads the
run directory: nothing is created or deleted there.
"""

from __future__ import annotations

import argparse
import json
import sys

from jaxrl_reason import parallel
from jaxrl_reason.datasets import read_problems
from jaxrl_reason.evaluation.heldout import evaluate, thinking_budget_env
from jaxrl_reason.evaluation.sweep import sweep_workdir
from jaxrl_reason.problems import heldout_problems
from jaxrl_reason.run.agent import METHODS, Agent
from jaxrl_reason.run.checkpoint import CheckpointError


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m jaxrl_reason.evaluate", description=__doc__.split("\n")[0])
    p.add_argument("--workdir", required=True)
    p.add_argument("--method", choices=METHODS, default=None, help="default: the run's eval.method")
    p.add_argument("--num_simulations", type=_positive_int, default=None, help="default: the run's")
    p.add_argument("--num_problems", type=_positive_int, default=None)
    p.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
    p.add_argument("--responses", default=None, help="write one JSON line per problem: problem, response, reward")
    p.add_argument(
        "--max_response_tokens", type=_positive_int, default=None, help="thinking budget: cut responses at N tokens"
    )
    p.add_argument("--sweep", action="store_true", help="test-time compute sweep -> ttc_sweep.csv/png")
    p.add_argument("--mcts_sims", default="1,2,4,8,16,32,64,128,256", help="sweep: MCTS budgets")
    p.add_argument("--thinking_budgets", default="", help="sweep: greedy with responses cut at these token counts")
    p.add_argument("--best_of_n", default="2,4,8,16", help="sweep: best-of-N sizes")
    p.add_argument("--beam_widths", default="2,4,8", help="sweep: token-level beam widths")
    p.add_argument("--step_beam_widths", default="2,4", help="sweep: step-level (PRM) beam widths")
    p.add_argument("--lookahead", default="2x2,4x2", help="sweep: lookahead WIDTHxDEPTH list")
    p.add_argument("--step_mcts_sims", default="", help="sweep: step MCTS budgets (one-player tasks; none by default)")
    p.add_argument("--step_mcts_candidates", type=_positive_int, default=8, help="sweep: step MCTS candidates/node")
    p.add_argument("--step_mcts_step_length", type=_positive_int, default=12, help="sweep: step MCTS max step tokens")
    p.add_argument("--mcts_algorithm", default="gumbel", choices=("gumbel", "muzero"))
    p.add_argument("--mcts_gumbel_scale", type=float, default=0.0, help="sweep: Gumbel noise (0: deterministic)")
    p.add_argument("--prm_dir", default=None, help="sweep: PRM directory (default <workdir>/prm)")
    p.add_argument("--out_dir", default=None, help="sweep: where the CSV/PNG go (default <workdir>)")
    p.add_argument("--tfds_name", default=None, help="evaluate on this TFDS problem set (jaxrl_reason.datasets)")
    p.add_argument("--tfds_data_dir", default=None, help="directory of the TFDS dataset")
    p.add_argument("--tfds_split", default="test")
    return p


def _sweep(args) -> int:
    sweep_workdir(
        args.workdir,
        num_problems=args.num_problems,
        prm_dir=args.prm_dir,
        out_dir=args.out_dir,
        mcts_sims=_ints(args.mcts_sims),
        best_of_n=_ints(args.best_of_n),
        beam_widths=_ints(args.beam_widths),
        step_beam_widths=_ints(args.step_beam_widths),
        lookahead=tuple(tuple(int(v) for v in x.split("x")) for x in args.lookahead.split(",") if x),
        mcts_algorithm=args.mcts_algorithm,
        mcts_gumbel_scale=args.mcts_gumbel_scale,
        thinking_budgets=_ints(args.thinking_budgets),
        step_mcts_sims=_ints(args.step_mcts_sims),
        step_mcts_candidates=args.step_mcts_candidates,
        step_mcts_step_length=args.step_mcts_step_length,
    )
    print(f"wrote {args.out_dir or args.workdir}/ttc_sweep.csv and ttc_sweep.png")
    return 0


def _problems(args, agent) -> list[dict]:
    if args.tfds_name:
        return read_problems(args.tfds_name, data_dir=args.tfds_data_dir, split=args.tfds_split)
    config = agent.config
    if args.num_problems:
        config.eval.num_problems = args.num_problems
    return heldout_problems(agent.env, config)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(sys.argv[1:] if argv is None else argv)
    if args.tfds_name and not args.tfds_data_dir:
        print("error: --tfds_name needs --tfds_data_dir", file=sys.stderr)
        return 2
    try:
        if args.sweep:
            return _sweep(args)
        # every device of this process gets its share of the problems (8 fake ones on a CPU-only machine)
        agent = Agent.load(args.workdir, step=args.step, mesh=parallel.make_mesh(-1, 1))
        problems = _problems(args, agent)
        env = thinking_budget_env(agent, args.max_response_tokens) if args.max_response_tokens else agent.env
    except (FileNotFoundError, CheckpointError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    config = agent.config
    metrics = evaluate(
        agent,
        env,
        problems,
        method=args.method or config.eval.method,
        num_simulations=args.num_simulations,
        batch_size=config.eval.batch_size,
        seed=config.seed,
        return_responses=bool(args.responses),
    )
    if args.responses:
        with open(args.responses, "w") as f:
            for row in metrics.pop("responses"):
                f.write(json.dumps(row) + "\n")
    if args.max_response_tokens:
        metrics["max_response_tokens"] = args.max_response_tokens
    print(json.dumps(metrics, indent=2))
    return 0
