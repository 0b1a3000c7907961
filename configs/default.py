"""The README's main job: imitation from a teacher who shows only 256 worked solutions, then expert iteration
(STaR) on fresh problems checked by the verifier, on 2-digit addition, on a CPU.

python -m jaxrl_reason.train --config configs/default.py --workdir workdirs/default

Imitation of 256 demonstrations plateaus (the model has seen too few worked solutions to generalise); RL
then practises on problems nobody demonstrated, keeping the responses the verifier accepts, and passes
the imitation plateau. Held-out problems are in neither stream. The control run, more imitation for the
same wall-clock, is configs/default_sft_only.py (docs/RESULTS.md).
"""

from jaxrl_reason.config import base_config


def get_config():
    c = base_config()
    c.env_id = "addition-v0"
    c.env_kwargs.num_digits = 2
    c.total_steps = 700
    c.sft.steps = 400
    c.sft.batch_size = 64
    c.sft.num_examples = 256  # the teacher's worked solutions: all imitation ever sees
    c.optim.learning_rate = 2e-3
    c.optim.warmup_steps = 50
    c.algorithm = "star"  # expert iteration: sample, keep what the verifier accepts, imitate it
    c.rl.num_problems = 32
    c.rl.group_size = 8
    c.rl.temperature = 1.0
    c.rl.updates_per_batch = 1
    c.rl.learning_rate = 2e-4
    c.rl.warmup_steps = 10
    c.eval.num_problems = 512
    c.eval.batch_size = 256
    c.checkpoint_every = 100
    c.eval_every = 100
    c.log_every = 10
    return c
