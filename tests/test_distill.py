"""Distillation: the token-level KL against hand-computed values; the distillation set of a teacher run trained
long enough to solve some of its problems (kept rows are exactly the teacher's correct samples, re-scored by the
Python verifier); a student's first logits-mode loss is the KL of its initial params against the stored teacher
distribution."""

import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_reason.algorithms.distill import distill_loss
from jaxrl_reason.envs.registry import make
from jaxrl_reason.problems import initial_states, run_problem_sets
from jaxrl_reason.run.agent import Agent
from jaxrl_reason.run.sampling import sample_responses
from jaxrl_reason.training import imitation
from jaxrl_reason.training.imitation import distillation_set, sft_batch
from jaxrl_reason.training.loop import train
from jaxrl_reason.training.state import build_model, build_optimizer, init_state
from tests.test_train import tiny_config

TEACHER_STEPS = 300  # 1-digit addition: enough SFT to solve part of its own 32 problems when sampling


def test_distill_loss_golden():
    # one response position (prompt_length 1, length 2): teacher p = (.5, .5), student q = (.25, .75)
    tokens = jnp.array([[0, 1]])
    batch = {
        "tokens": tokens,
        "prompt_length": jnp.array([1]),
        "length": jnp.array([2]),
        "teacher_log_probs": jnp.log(jnp.array([[[0.5, 0.5]]])),
    }
    logits = jnp.log(jnp.array([[[0.25, 0.75], [0.9, 0.1]]]))
    loss, m = distill_loss(logits, batch)
    expected = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    np.testing.assert_allclose(float(loss), expected, rtol=1e-6)
    assert float(m["token_accuracy"]) == 1.0  # argmax q = 1 = the sampled token


def test_distill_loss_golden_masks_prompt_and_padding_and_zero_teacher_probs():
    far_p, far_q = [0.9, 0.1], [0.1, 0.9]  # a large KL wherever they meet: prompt and padding positions
    p = jnp.array([[far_p, [0.5, 0.5], [1.0, 0.0]], [[0.25, 0.75], far_p, far_p]])
    q = jnp.array([[far_q, [0.25, 0.75], [0.4, 0.6], far_q], [[0.6, 0.4], far_q, far_q, far_q]])
    batch = {
        # row 0: prompt 2, length 4 -> positions 1, 2 predict tokens 2, 3; row 1: prompt 1, length 2 -> position 0
        "tokens": jnp.array([[0, 0, 1, 1], [0, 1, 0, 0]]),
        "prompt_length": jnp.array([2, 1]),
        "length": jnp.array([4, 2]),
        "teacher_log_probs": jnp.log(p),  # log 0 = -inf where the teacher gives a token no mass
    }
    loss, m = distill_loss(jnp.log(q), batch)
    kl = [
        0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75),
        1.0 * math.log(1.0 / 0.4),  # the p = 0 entry adds nothing (0 log 0 = 0), not NaN
        0.25 * math.log(0.25 / 0.6) + 0.75 * math.log(0.75 / 0.4),
    ]
    np.testing.assert_allclose(float(loss), sum(kl) / 3, rtol=1e-6)
    # argmax q: 1 (target 1, right), 1 (target 1, right), 0 (target 1, wrong)
    np.testing.assert_allclose(float(m["token_accuracy"]), 2 / 3, rtol=1e-6)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("teacher"))
    config = tiny_config(
        algorithm="none",
        total_steps=TEACHER_STEPS,
        sft__steps=TEACHER_STEPS,
        checkpoint_every=TEACHER_STEPS,
        eval_every=TEACHER_STEPS,
    )
    config.optim.learning_rate = 3e-3
    train(config, workdir, progress=False)
    return workdir


def _student(teacher, **changes):
    return tiny_config(
        algorithm="none",
        total_steps=3,
        sft__steps=3,
        checkpoint_every=3,
        eval_every=3,
        distill__teacher_workdir=teacher,
        **changes,
    )


def _setup(config):
    env = make(config.env_id, **dict(config.env_kwargs))
    train_dicts, _ = run_problem_sets(env, config.seed, config.sft.num_examples, config.eval.num_problems)
    return env, train_dicts


def _teacher_samples(teacher, config, env, train_dicts, with_logits=False):
    """The reference: the teacher's samples drawn as documented (the run's seed, its distillation stream 303)."""
    key = jax.random.fold_in(jax.random.PRNGKey(config.seed), 303)
    d = config.distill
    return sample_responses(
        Agent.load(teacher),
        env,
        train_dicts,
        key,
        temperature=d.temperature,
        samples_per_problem=d.samples_per_problem,
        with_logits=with_logits,
    )


def _response_text(env, tokens, p0, n):
    tok = env.tokenizer
    return tok.decode([int(x) for x in tokens[p0:n]]).split(tok.eos, 1)[0]


def test_sequence_distillation_keeps_exactly_the_teachers_correct_samples(teacher):
    config = _student(teacher, distill__keep="correct", distill__temperature=0.5, distill__samples_per_problem=2)
    env, train_dicts = _setup(config)
    ref = _teacher_samples(teacher, config, env, train_dicts)
    problems = [d for d in train_dicts for _ in range(2)]
    # the set-up: the teacher solves some samples and fails others, so the filter has something to do
    solved = ref["reward"] == 1.0
    assert 0 < solved.sum() < len(solved), solved.sum()
    # the Python verifier agrees with every sample's reward, kept or not
    for i, problem in enumerate(problems):
        text = _response_text(env, ref["tokens"][i], int(ref["prompt_length"][i]), int(ref["length"][i]))
        assert env.score_text(problem, text) == ref["reward"][i], (problem, text)
    data = distillation_set(config, env, build_model(config, env), train_dicts)
    assert set(data) == {"tokens", "prompt_length", "length"}
    for k in data:
        np.testing.assert_array_equal(data[k], ref[k][solved])
    # each kept row starts with its problem's prompt
    states = initial_states(env, [problems[i] for i in np.flatnonzero(solved)])
    np.testing.assert_array_equal(data["prompt_length"], np.asarray(states.prompt_length))
    for row, prompt, p0 in zip(data["tokens"], np.asarray(states.tokens), data["prompt_length"], strict=True):
        np.testing.assert_array_equal(row[:p0], prompt[:p0])


def test_a_teacher_that_solves_nothing_is_one_clear_error(teacher, monkeypatch):
    config = _student(teacher, distill__keep="correct")
    env, train_dicts = _setup(config)

    def none_solved(agent, env, dicts, key, **kw):
        n, length = len(dicts), env.spec.max_length
        return {
            "tokens": np.zeros((n, length), np.int32),
            "prompt_length": np.ones(n),
            "length": np.full(n, 2),
            "reward": np.zeros(n),
        }

    monkeypatch.setattr(imitation, "sample_responses", none_solved)
    with pytest.raises(ValueError, match=f"solved none of {len(train_dicts)} sampled problems"):
        distillation_set(config, env, build_model(config, env), train_dicts)


def test_logits_distillation_stores_the_teachers_distribution_and_the_student_trains_on_it(teacher, tmp_path):
    config = _student(teacher, distill__mode="logits", distill__keep="all")
    env, train_dicts = _setup(config)
    ref = _teacher_samples(teacher, config, env, train_dicts, with_logits=True)
    data = distillation_set(config, env, build_model(config, env), train_dicts)
    assert set(data) == {"tokens", "prompt_length", "length", "teacher_log_probs"}
    for k in ("tokens", "prompt_length", "length"):  # keep="all": every sample, in order
        np.testing.assert_array_equal(data[k], ref[k])
    # the stored distribution is the teacher's forward on its own samples
    t = Agent.load(teacher)
    logits, _ = t.model.apply(t.params, jnp.asarray(data["tokens"][:4]))
    np.testing.assert_allclose(
        data["teacher_log_probs"][:4], np.asarray(jax.nn.log_softmax(logits[:, :-1], -1)), atol=1e-5
    )
    assert (data["length"] > data["prompt_length"]).all()
    # the student's first logged loss is distill_loss of its initial params on batch 0 of that set
    summary = train(config, str(tmp_path / "student"), progress=False)
    assert summary["step"] == 3
    lines = [json.loads(x) for x in open(os.path.join(tmp_path, "student", "metrics.jsonl"))]
    sft = [x for x in lines if x["phase"] == "sft"]
    assert [x["step"] for x in sft] == [1, 2, 3]
    model = build_model(config, env)
    params = init_state(config, env, model, build_optimizer(config)).params
    batch = {k: jnp.asarray(v) for k, v in sft_batch(data, 0, config.sft.batch_size, config.seed).items()}
    expected, _ = distill_loss(model.apply(params, batch["tokens"])[0], batch)
    np.testing.assert_allclose(sft[0]["loss"], float(expected), rtol=1e-4)


def test_distill_from_missing_teacher_is_an_error(tmp_path):
    with pytest.raises((FileNotFoundError, ValueError)):
        train(_student(str(tmp_path / "nope")), str(tmp_path / "s"), progress=False)
