"""3-digit addition: SFT warm start then AlphaZero self-play."""

from jaxrl_reason.config import base_config


def get_config():
    c = base_config()
    c.env_id = "addition-v0"
    c.env_kwargs.num_digits = 3
    c.total_steps = 2000
    c.sft.steps = 1500
    c.sft.num_examples = 16384
    c.optim.learning_rate = 2e-3
    c.selfplay.num_simulations = 16
    c.eval.num_problems = 1000
    c.checkpoint_every = 250
    c.eval_every = 250
    return c
