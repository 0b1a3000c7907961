"""`python -m jaxrl_reason.evaluate --responses F.jsonl`: one JSON object per held-out problem, in order, whose
reward is what the Python verifier gives its response; the printed metrics agree with the file."""

import json
import os
import subprocess
import sys

import numpy as np

from jaxrl_reason.problems import heldout_problems
from jaxrl_reason.run.agent import Agent
from tests._tiny_run import tiny_run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_responses_file_holds_every_problem_rescored_by_the_verifier(tmp_path):
    workdir, out = tiny_run(), str(tmp_path / "responses.jsonl")
    env = {**os.environ, "PYTHONPATH": ROOT}
    args = ["--workdir", workdir, "--responses", out, "--method", "sample", "--num_problems", "6"]
    proc = subprocess.run(
        [sys.executable, "-m", "jaxrl_reason.evaluate", *args], env=env, capture_output=True, timeout=600, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    metrics = json.loads(proc.stdout.decode()[proc.stdout.decode().index("{") :])
    rows = [json.loads(line) for line in open(out)]
    agent = Agent.load(workdir)
    config = agent.config
    config.eval.num_problems = 6
    assert [r["problem"] for r in rows] == heldout_problems(agent.env, config)  # one per problem, in order
    assert all(set(r) == {"problem", "response", "reward"} for r in rows)
    assert all(agent.env.tokenizer.eos not in r["response"] for r in rows)  # cut at the end of the response
    rescored = [agent.env.score_text(r["problem"], r["response"]) for r in rows]
    assert [r["reward"] for r in rows] == rescored
    assert metrics["num_problems"] == 6 and metrics["method"] == "sample" and "responses" not in metrics
    assert metrics["accuracy"] == np.mean(np.array(rescored) == 1.0) and metrics["mean_reward"] == np.mean(rescored)
