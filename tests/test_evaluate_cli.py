"""`python -m jaxrl_reason.evaluate --responses F.jsonl`: one JSON object per held-out problem, in order, whose
reward is what the Python verifier gives its response; the printed metrics agree with the file."""

import json
import os
import shutil
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


def _snapshot(root: str) -> dict:
    out = {}
    for d, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(d, name)
            out[path] = os.stat(path).st_mtime_ns
    return out


def test_evaluate_beside_a_live_run_writes_and_deletes_nothing(tmp_path, capsys):
    from jaxrl_reason.evaluation.cli import main

    workdir = str(tmp_path / "run")
    shutil.copytree(tiny_run(), workdir)
    # what a live run's Orbax writer has half written: a reader must leave it alone
    live = os.path.join(workdir, "checkpoints", "12.orbax-checkpoint-tmp", "state")
    os.makedirs(live)
    open(os.path.join(live, "part"), "w").write("half a checkpoint")
    before = _snapshot(workdir)
    assert main(["--workdir", workdir, "--num_problems", "4"]) == 0
    printed = capsys.readouterr().out
    lines = printed.splitlines()
    assert json.loads("\n".join(lines[lines.index("{") :]))["num_problems"] == 4
    assert _snapshot(workdir) == before
    missing = str(tmp_path / "no_such_run")
    assert main(["--workdir", missing]) == 2
    assert not os.path.exists(missing)  # a mistyped workdir is not created
    assert "no run at" in capsys.readouterr().err
