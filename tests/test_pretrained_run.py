"""Training from a pretrained model (``model.pretrained=DIR``): the issue's done-when test and the config's checks.

A tiny random Qwen2-layout checkpoint (its embedding padded past the tokenizer, as Qwen's is) with a byte-level
BPE tokenizer trained here runs a few SFT + GRPO steps on 1-digit addition through the command line, is killed
right after a checkpoint, resumes, and ends bit-identical to an uninterrupted run.
"""

import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from safetensors.numpy import load_file

import jaxrl_reason as jr
from jaxrl_reason.config import ConfigError, load_config
from jaxrl_reason.envs.adapters.retokenized import RetokenizedTask
from jaxrl_reason.run.checkpoint import Checkpointer
from jaxrl_reason.training.cli import main
from jaxrl_reason.training.loop import KILL_AT_STEP_ENV
from tests.hf_checkpoints import FAMILIES, write_checkpoint
from tests.test_bpe_tokenizer import write_tokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VOCAB = 416  # the model's rows: the tokenizer's 401 (answer marker included) + padding

CONFIG = """
from jaxrl_reason.config import base_config

def get_config():
    c = base_config()
    c.env_id = "addition-v0"
    c.env_kwargs.num_digits = 1
    c.algorithm = "grpo"
    c.total_steps = 4
    c.sft.steps = 2
    c.sft.batch_size = 8
    c.sft.num_examples = 32
    c.rl.group_size = 4
    c.rl.num_problems = 2
    c.rl.updates_per_batch = 2
    c.rl.warmup_steps = 0
    c.rl.learning_rate = 1e-3
    c.optim.warmup_steps = 0
    c.checkpoint_every = 1
    c.eval_every = 4
    c.eval.num_problems = 8
    c.eval.batch_size = 8
    c.log_every = 1
    return c
"""


@pytest.fixture(scope="module")
def qwen_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("qwen")
    write_checkpoint(str(path), {**FAMILIES["qwen2"], "vocab_size": VOCAB}, seed=3)
    write_tokenizer(path)
    return path


def _cli(cfg, workdir, qwen_dir, **env):
    args = ["--config", str(cfg), "--workdir", str(workdir), "--no-progress", f"--config.model.pretrained={qwen_dir}"]
    return [sys.executable, "-m", "jaxrl_reason.train", *args], {**os.environ, "PYTHONPATH": ROOT, **env}


def _params(workdir, step=None):
    with Checkpointer(str(workdir), read_only=True) as ck:
        return ck.restore_params(step), ck.all_steps()


def _assert_same(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_grpo_from_a_qwen_checkpoint_with_its_tokenizer_resumes_bit_exactly(tmp_path, qwen_dir):
    cfg = tmp_path / "tiny.py"
    cfg.write_text(CONFIG)
    # B: killed right after its step-3 checkpoint (between the two updates on GRPO's first batch), then resumed
    cmd, env = _cli(cfg, tmp_path / "b", qwen_dir, **{KILL_AT_STEP_ENV: "3"})
    proc = subprocess.run(cmd, env=env, capture_output=True, timeout=600, cwd=ROOT, text=True)
    assert proc.returncode == -9, proc.stderr[-3000:]
    assert "params from pretrained" in proc.stdout + proc.stderr
    cmd, env = _cli(cfg, tmp_path / "b", qwen_dir)
    proc = subprocess.run(cmd, env=env, capture_output=True, timeout=600, cwd=ROOT, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resumed from" in proc.stdout + proc.stderr and "params from pretrained" not in proc.stdout + proc.stderr
    # A: uninterrupted, through the same command line (in this process)
    args = ["--config", str(cfg), "--workdir", str(tmp_path / "a"), "--no-progress"]
    assert main([*args, f"--config.model.pretrained={qwen_dir}"]) == 0
    params_a, steps_a = _params(tmp_path / "a")
    params_b, steps_b = _params(tmp_path / "b")
    assert steps_a == [2, 3, 4] and steps_b == [2, 3, 4]  # keep_checkpoints=3
    _assert_same(params_a, params_b)
    # the run started from the checkpoint's weights (4 steps at lr 1e-3 move them a little) and trained them
    hf = load_file(os.path.join(qwen_dir, "model.safetensors"))
    embed = np.asarray(params_a["embed"])
    assert embed.shape == (VOCAB, 32)
    assert 0 < np.abs(embed - hf["model.embed_tokens.weight"]).max() < 0.05
    # the agent of the run plays over the BPE tokenizer it saved, at the model's vocabulary
    agent = jr.Agent.load(str(tmp_path / "b"))
    assert isinstance(agent.env, RetokenizedTask) and agent.env.spec.num_actions == VOCAB
    assert agent.env.tokenizer == jr.BPETokenizer.from_pretrained(str(qwen_dir))
    assert not agent.env._legal_mask[401:].any()


def test_pretrained_config_errors(tmp_path, qwen_dir):
    cfg = tmp_path / "c.py"
    cfg.write_text(CONFIG)
    with pytest.raises(ConfigError, match="fixes the architecture"):
        load_config(cfg, [f"model.pretrained={qwen_dir}", "model.overrides.d_model=64"])
    config = load_config(cfg, [f"model.pretrained={tmp_path}"])  # a directory without config.json
    with pytest.raises(ConfigError, match="expected a Hugging Face model directory with config.json"):
        jr.train(config, str(tmp_path / "w"), progress=False)
    no_tokenizer = tmp_path / "no_tok"
    write_checkpoint(str(no_tokenizer), {**FAMILIES["qwen2"], "vocab_size": VOCAB}, seed=3)
    config = load_config(cfg, [f"model.pretrained={no_tokenizer}"])
    with pytest.raises(ConfigError, match="vocabulary of 416 tokens and no tokenizer.json"):
        jr.train(config, str(tmp_path / "w2"), progress=False)
