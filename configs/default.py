"""The README's main job: 2-digit addition, SFT warm start then AlphaZero self-play, on a CPU.

python -m jaxrl_reason.train --config configs/default.py --workdir workdirs/default
"""

from jaxrl_reason.config import base_config


def get_config():
    c = base_config()
    c.env_id = "addition-v0"
    c.env_kwargs.num_digits = 2
    c.total_steps = 750
    c.sft.steps = 500
    c.sft.batch_size = 64
    c.sft.num_examples = 4096
    c.optim.learning_rate = 2e-3
    c.optim.warmup_steps = 50
    c.selfplay.num_episodes = 64
    c.selfplay.num_simulations = 8
    c.selfplay.top_k = 4
    c.selfplay.max_depth = 4
    c.selfplay.updates_per_iteration = 4
    c.selfplay.batch_size = 64
    c.selfplay.value_warmup_steps = 100
    c.selfplay.rescale_values = False
    c.eval.num_problems = 512
    c.eval.batch_size = 256
    c.checkpoint_every = 100
    c.eval_every = 100
    c.log_every = 10
    return c
