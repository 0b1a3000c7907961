"""Dense process rewards (rl.process_reward="steps"): hand-placed step rewards of hand-written responses, and a
GRPO run whose stored per-token advantages equal the ones recomputed in Python from its own responses."""

from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_reason.algorithms.grpo import group_advantages, process_advantages
from jaxrl_reason.config import ConfigError, validate
from jaxrl_reason.envs.registry import make
from jaxrl_reason.training.loop import train
from jaxrl_reason.training.process_reward import step_rewards, step_rewards_host, token_advantages
from tests.test_grpo import _raw_state, _rescore, rl_config

ADD2 = make("addition-v0", num_digits=2)


def _batch(env, rows, prompt_length=3, width=24):
    """Token buffers with a dummy prompt of `prompt_length` tokens, then each response text and EOS."""
    tok = env.tokenizer
    tokens = np.zeros((len(rows), prompt_length + width), np.int32)
    valid = np.zeros((len(rows), width), bool)
    for b, (_, text, eos) in enumerate(rows):
        ids = tok.encode(text) + ([tok.eos_id] if eos else [])
        tokens[b, prompt_length : prompt_length + len(ids)] = ids
        valid[b, : len(ids)] = True
    problems = [env.problem_from_dict(p) for p, _, _ in rows]
    stacked = jax.tree.map(lambda *x: np.stack(x), *problems)
    return tokens, np.full((len(rows),), prompt_length, np.int32), valid, stacked


def test_step_rewards_sit_at_each_step_end_with_the_checkers_label():
    p = {"a": 57, "b": 68}
    rows = [
        (p, "7+8=15,5+6+1=12,<ans>125", True),  # all right: steps end at 6 and 15, the answer at 19
        (p, "7+8=15,5+6=11,<ans>115", True),  # carry dropped: the second step and the answer are wrong
        (p, "7+8=14,5+", False),  # cut off: one (wrong) step, no answer step
        (p, "7+8=15,5+6+1=12,<ans>124", True),  # steps right, answer wrong
    ]
    rewards, ends = step_rewards_host(ADD2, *_batch(ADD2, rows))
    expected_ends = [[6, 15, 19], [6, 13, 17], [6], [6, 15, 19]]
    expected_rewards = [[1, 1, 1], [1, 0, 0], [0], [1, 1, 0]]
    for b in range(4):
        assert np.flatnonzero(ends[b]).tolist() == expected_ends[b]
        assert rewards[b, expected_ends[b]].tolist() == expected_rewards[b]
        assert rewards[b, ~ends[b]].sum() == 0


def test_inside_jit_the_advantages_are_the_hand_computed_ones():
    """A group of two: all steps right and the answer right / the carry dropped. Group-normalised step rewards
    (1, 1, 1, 1, 0, 0): mean 2/3, std sqrt(2)/3, so a right step is +1/sqrt(2) and a wrong one -sqrt(2);
    outcome advantages +1 / -1; weight 0.5 on the return-to-go of the step rewards."""
    p = {"a": 57, "b": 68}
    rows = [(p, "7+8=15,5+6+1=12,<ans>125", True), (p, "7+8=15,5+6=11,<ans>115", True)]
    tokens, prompt_length, valid, problems = _batch(ADD2, rows)
    rl = SimpleNamespace(process_normalize="group", process_weight=0.5)

    @jax.jit
    def advantages(tokens, prompt_length, valid, problems):
        traj = SimpleNamespace(
            tokens=tokens, prompt_length=prompt_length, valid=valid, final_state=SimpleNamespace(problem=problems)
        )
        r, ends = step_rewards(ADD2, traj)
        return token_advantages(rl, jnp.array([1.0, -1.0]), r, ends, valid, group_size=2)

    adv = np.asarray(advantages(tokens, prompt_length, valid, problems))
    right, wrong = 1 / np.sqrt(2), -np.sqrt(2)
    expected = np.zeros(valid.shape)
    expected[0, :7], expected[0, 7:16], expected[0, 16:20] = 3 * right, 2 * right, right  # steps end at 6, 15, 19
    expected[1, :7], expected[1, 7:14], expected[1, 14:18] = right + 2 * wrong, 2 * wrong, wrong  # 6, 13, 17
    expected = np.where(valid, np.array([[1.0], [-1.0]]) + 0.5 * expected, 0.0)  # EOS (20, 18): outcome only
    np.testing.assert_allclose(adv, expected, atol=1e-5)


def test_tasks_without_a_path_step_checker_are_refused():
    assert ADD2.has_step_checker
    assert make("countdown-v0").has_step_checker
    backward = make("countdown-v0", num_numbers=(3, 3), demo_style="backward")
    assert not backward.has_step_checker
    with pytest.raises(ValueError, match="demo_style='path'"):
        backward.step_labels({"numbers": [3, 5, 7], "target": 22}, "22-3=19,")
    with pytest.raises(ValueError, match="exact step checker"):
        train(rl_config(rl__process_reward="steps", env_id="sort-v0", env_kwargs={}), "/nonexistent", progress=False)
    with pytest.raises(ConfigError, match="process_reward"):
        validate(rl_config(algorithm="star", rl__process_reward="steps"))
    with pytest.raises(ConfigError, match="process_normalize"):
        validate(rl_config(rl__process_normalize="batch"))


def test_grpo_stores_outcome_plus_process_advantages_per_token(tmp_path):
    config = rl_config(rl__process_reward="steps", rl__process_weight=0.5, rl__kl_coef=0.0)
    train(config, str(tmp_path), progress=False)
    buf = _raw_state(str(tmp_path), 8)["buffer"]
    env, tok = make("addition-v0", num_digits=1), make("addition-v0", num_digits=1).tokenizer
    step_r = np.zeros(buf["valid"].shape, np.float32)
    step_end = np.zeros(buf["valid"].shape, bool)
    for b, (row, p0, valid) in enumerate(zip(buf["tokens"], buf["prompt_length"], buf["valid"], strict=True)):
        a, c = tok.decode([int(x) for x in row[1:p0]]).rstrip("=").split("+")
        ids = [int(x) for x in row[p0 : p0 + int(valid.sum())]]
        ids = ids[: ids.index(tok.eos_id)] if tok.eos_id in ids else ids
        labels = env.step_labels({"a": int(a), "b": int(c)}, tok.decode(ids))
        marker = ids.index(tok.answer_id) if tok.answer_id in ids else len(ids)
        ends = [i for i in range(marker) if ids[i] == tok.id_of(",")] + ([len(ids) - 1] if marker < len(ids) else [])
        step_r[b, ends], step_end[b, ends] = labels, True
    outcome = group_advantages(jnp.asarray(_rescore(buf).reshape(2, 4)), eps=1e-6).reshape(-1)
    process = process_advantages(
        jnp.asarray(step_r), jnp.asarray(step_end), jnp.asarray(buf["valid"]), group_size=4, normalize="group"
    )
    expected = np.where(buf["valid"], np.asarray(outcome)[:, None], 0.0) + 0.5 * np.asarray(process)
    assert buf["advantages"].shape == buf["valid"].shape
    assert step_end.any()  # (the 3-step imitation policy gets no step right: the process term is tested above)
    np.testing.assert_allclose(buf["advantages"], expected, atol=1e-5)
