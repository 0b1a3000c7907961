"""Test-time compute sweep on a real tiny run: CSV rows/columns and the PNG."""

import csv
import os

import pytest

from jaxrl_reason.evaluation.cli import main as evaluate_main
from jaxrl_reason.evaluation.heldout import evaluate
from jaxrl_reason.evaluation.sweep import COLUMNS, sweep_specs
from jaxrl_reason.models.flops import decode_flops_per_token, forward_flops_per_token
from jaxrl_reason.problems import heldout_problems
from jaxrl_reason.run.agent import Agent
from tests._tiny_run import tiny_run


def test_sweep_specs_lists_every_method():
    specs = sweep_specs(
        mcts_sims=(1, 4),
        best_of_n=(2,),
        beam_widths=(2,),
        step_beam_widths=(2,),
        lookahead=((2, 2),),
        with_prm=True,
        step_id=7,
        step_mcts_sims=(2,),
    )
    names = [(m, s, b) for m, s, b, _ in specs]
    assert names == [
        ("greedy", "", 1),
        ("best_of_n", "majority", 2),
        ("best_of_n", "orm", 2),
        ("best_of_n", "prm", 2),
        ("beam", "prm", 2),
        ("step_beam", "prm", 2),
        ("lookahead", "depth2", 2),
        ("mcts", "gumbel", 1),
        ("mcts", "gumbel", 4),
        ("step_mcts", "gumbel", 2),
    ]
    assert specs[5][3] == {"beam_width": 2, "expand": 2, "step_id": 7}
    assert specs[-2][3] == {"num_simulations": 4, "algorithm": "gumbel", "gumbel_scale": 0.0}
    kw = {"num_simulations": 2, "num_candidates": 8, "max_step_length": 12, "algorithm": "gumbel", "gumbel_scale": 0.0}
    assert specs[-1][3] == kw
    no_rescale = sweep_specs(mcts_sims=(4,), best_of_n=(), beam_widths=(), lookahead=(), mcts_rescale_values=False)
    assert no_rescale[-1][3]["rescale_values"] is False
    # no step token (e.g. a game): no step-level beam
    assert all(m != "step_beam" for m, *_ in sweep_specs(step_beam_widths=(2,), step_id=None))
    assert all(m != "step_mcts" for m, *_ in sweep_specs(step_mcts_sims=(2,), step_id=None))


def test_sweep_cli_writes_csv_and_png():
    workdir = tiny_run()
    for f in ("ttc_sweep.csv", "ttc_sweep.png"):
        if os.path.exists(os.path.join(workdir, f)):
            os.remove(os.path.join(workdir, f))
    rc = evaluate_main(
        [
            "--workdir",
            workdir,
            "--sweep",
            "--num_problems",
            "8",
            "--mcts_sims",
            "1,2",
            "--best_of_n",
            "2",
            "--beam_widths",
            "2",
            "--step_beam_widths",
            "2",
            "--lookahead",
            "2x2",
            "--thinking_budgets",
            "2",
            "--prm_dir",
            os.path.join(workdir, "no_prm"),
        ]
    )
    assert rc == 0
    with open(os.path.join(workdir, "ttc_sweep.csv")) as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0].keys()) == COLUMNS
    assert [(r["method"], r["selection"], r["budget"]) for r in rows] == [
        ("greedy", "thinking", "2"),
        ("greedy", "", "1"),
        ("best_of_n", "majority", "2"),
        ("best_of_n", "orm", "2"),
        ("beam", "value", "2"),
        ("step_beam", "value", "2"),
        ("lookahead", "depth2", "2"),
        ("mcts", "gumbel", "1"),
        ("mcts", "gumbel", "2"),
    ]
    assert all(r["num_problems"] == "8" for r in rows)
    # the greedy row is jr.evaluate's greedy pass on the same 8 held-out problems, with decode's FLOP count:
    # one prefill of the whole buffer, then one KV-cache decode step per generated token
    agent = Agent.load(workdir)
    ref = evaluate(agent, agent.env, heldout_problems(agent.env, agent.config)[:8], method="greedy")
    greedy = rows[1]
    assert float(greedy["accuracy"]) == ref["accuracy"]
    # a 2-token thinking budget: every response is cut at 2 tokens, too short for any 1-digit sum's solution
    assert float(rows[0]["tokens_per_problem"]) <= 2 and float(rows[0]["accuracy"]) == 0.0
    assert all(r["with_verifier"] == "False" for r in rows)  # addition: no search may read the stored answer
    assert float(greedy["tokens_per_problem"]) == ref["mean_response_tokens"] > 0
    seq, cfg = agent.env.spec.max_length, agent.model.config
    flops = seq * forward_flops_per_token(cfg, seq) + ref["mean_response_tokens"] * decode_flops_per_token(cfg)
    assert float(greedy["flops_per_problem"]) == pytest.approx(flops, rel=1e-5)
    tok = {(r["method"], r["budget"]): float(r["tokens_per_problem"]) for r in rows}
    assert tok[("mcts", "2")] > tok[("mcts", "1")]  # more simulations, more tokens evaluated
    assert tok[("best_of_n", "2")] > tok[("greedy", "1")]
    acc = {(r["method"], r["budget"]): float(r["accuracy"]) for r in rows}
    assert acc[("mcts", "1")] == acc[("greedy", "1")]  # deterministic search, 1 simulation: the argmax
    assert os.path.getsize(os.path.join(workdir, "ttc_sweep.png")) > 1000
