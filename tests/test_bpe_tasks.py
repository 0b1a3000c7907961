"""Reasoning tasks over a pretrained BPE vocabulary: legal masks, the host-bridge reward, top-K search."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tokenizers
from tokenizers import models, pre_tokenizers, trainers

import jaxrl_reason as jr
from jaxrl_reason.envs.adapters.host import HostVerifiedTask
from jaxrl_reason.problems import stack_problems
from jaxrl_reason.search.step_mcts import default_step_ids
from tests.test_bpe_tokenizer import train_bpe, write_tokenizer

QWEN_VOCAB = 151_936  # Qwen2.5's embedding rows (its tokenizer has 151,665 tokens)


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    path = tmp_path_factory.mktemp("bpe")
    write_tokenizer(path)
    return jr.BPETokenizer.from_pretrained(str(path))


def _legal_texts(env, tok):
    mask = env._legal_mask
    return mask, {tok.decode([i]) for i in np.flatnonzero(mask[: tok.vocab_size])}


def test_addition_over_bpe_legal_actions_and_spec(tok):
    env = jr.with_tokenizer(jr.make("addition-v0", num_digits=2), tok, num_actions=tok.vocab_size + 9)
    spec = env.spec
    assert (spec.num_actions, spec.vocab_size) == (tok.vocab_size + 9, tok.vocab_size + 9)
    assert (spec.eos_id, spec.bos_id, spec.pad_id) == (tok.eos_id, tok.eos_id, tok.pad_id)  # no BOS: EOS opens
    mask, texts = _legal_texts(env, tok)
    assert mask.shape == (spec.num_actions,) and not mask[tok.vocab_size :].any()  # padding rows never legal
    assert mask[tok.eos_id] and mask[tok.answer_id] and not mask[tok.pad_id]
    assert not mask[tok.id_of("<|im_start|>")]  # other special tokens are not text of the task
    words = texts - {tok.eos, tok.answer_marker}
    assert {"0", "9", "+", "=", ","} <= words and all(set(t) <= set("0123456789+=,") for t in words)
    assert any(len(t) > 1 for t in texts)  # merged tokens ("39", ...) are legal too
    assert not any(" " in t or "." in t for t in texts)
    jr.api_test(env)  # includes verify == score_text on finished episodes and demonstrations earning 1


def test_char_level_task_is_unchanged():
    env = jr.make("addition-v0", num_digits=2)
    assert env.spec.num_actions == env.tokenizer.vocab_size == 4 + len(env.tokenizer.alphabet)
    assert env.spec.bos_id == env.tokenizer.bos_id == 1
    assert env._legal_mask.sum() == len("0123456789+=,") + 2


def _random_responses(env, tok, key, n):
    """Demonstrations (right), demonstrations with "+1" appended, and random legal token strings."""
    batch = jax.device_get(jax.vmap(env.sample_problem)(jax.random.split(key, n)))
    problems = [env.problem_to_dict(jax.tree.map(lambda x, i=i: x[i], batch)) for i in range(n)]
    legal = np.flatnonzero(env._legal_mask)
    rng = np.random.default_rng(0)
    texts = []
    for i, d in enumerate(problems):
        demo = env.demonstration(d)
        if i % 3 == 0:
            texts.append(demo)
        elif i % 3 == 1:
            texts.append(demo + "+1")
        else:
            ids = rng.choice(legal, size=rng.integers(1, env.max_response_length - 1))
            texts.append(tok.decode(ids[ids != tok.eos_id]))
    return problems, texts


def _episode_rewards(env, tok, problems, texts):
    """Plays each response token by token (jit, vmap) and returns the terminal rewards."""
    states = jax.vmap(env.init_from_problem)(stack_problems(env, problems))
    width = env.max_response_length
    actions = np.full((len(texts), width), tok.eos_id, np.int32)
    for i, t in enumerate(texts):
        ids = tok.encode(t)[: width - 1]
        actions[i, : len(ids)] = ids
    step = jax.jit(jax.vmap(env.step))
    total = np.zeros(len(texts), np.float32)
    for j in range(width):
        states = step(states, jnp.asarray(actions[:, j]))
        total += np.asarray(states.rewards[:, 0])
    assert bool(states.done.all())
    responses = [env.response_text(jax.tree.map(lambda x, i=i: x[i], states)) for i in range(len(texts))]
    return total, responses


def test_bpe_reward_equals_score_text_on_sampled_responses(tok):
    env = jr.with_tokenizer(jr.make("countdown-v0"), tok, num_actions=tok.vocab_size + 3)
    problems, texts = _random_responses(env, tok, jax.random.PRNGKey(1), 24)
    rewards, responses = _episode_rewards(env, tok, problems, texts)
    expected = [env.score_text(d, r) for d, r in zip(problems, responses, strict=True)]
    np.testing.assert_array_equal(rewards, np.asarray(expected, np.float32))
    assert rewards[::3].tolist() == [1.0] * 8  # the demonstrations
    assert rewards[1::3].sum() < 8 and rewards[2::3].sum() == 0  # wrong answers, random strings
    # the same rule as the character task's verifier on the same text (markers translated)
    char = jr.make("countdown-v0")
    for d, r in zip(problems, responses, strict=True):
        assert env.score_text(d, r) == char.score_text(d, r.replace(tok.answer_marker, char.tokenizer.answer_marker))


def test_host_verified_task_over_bpe(tok):
    problems = [{"prompt": f"what is {a} plus {b}?", "answer": str(a + b)} for a in range(5) for b in range(3)]

    class Scorer:
        def __init__(self, marker):
            self.marker = marker

        def __call__(self, d, text):
            return float(text.split(self.marker)[-1] == d["answer"])

        def with_tokenizer(self, new):  # as reasoning-gym's scorer: it reads the answer marker
            return Scorer(new.answer_marker)

    scorer = Scorer(jr.ASCII_TOKENIZER.answer_marker)

    ascii_env = HostVerifiedTask(problems, scorer, answer_key="answer", timeout_s=None, max_response_length=8)
    env = jr.with_tokenizer(ascii_env, tok, num_actions=QWEN_VOCAB)
    assert isinstance(env, HostVerifiedTask) and env.scorer.marker == tok.answer_marker
    assert env.spec.num_actions == QWEN_VOCAB
    mask = env._legal_mask
    assert not mask[tok.vocab_size :].any() and not mask[tok.id_of("<|im_start|>")] and mask[tok.answer_id]
    assert mask[tok.encode(" the")].all()  # default response alphabet: printable ASCII
    picked = problems[::2]
    texts = [env.demonstration(d) if i % 2 else tok.answer_marker + "7" for i, d in enumerate(picked)]
    rewards, responses = _episode_rewards(env, tok, picked, texts)
    np.testing.assert_array_equal(rewards, [env.score_text(d, r) for d, r in zip(picked, responses, strict=True)])
    assert rewards.tolist() == [float(i % 2 or d["answer"] == "7") for i, d in enumerate(picked)]
    direct = HostVerifiedTask(problems, Scorer(tok.answer_marker), tokenizer=tok, timeout_s=None, num_actions=None)
    assert direct.spec.num_actions == tok.vocab_size and direct.max_prompt_length == env.max_prompt_length


def test_bad_vocabularies_are_clear_errors(tok):
    char_task = jr.make("addition-v0", num_digits=1)
    with pytest.raises(ValueError, match="smaller than the tokenizer's vocabulary"):
        jr.with_tokenizer(char_task, tok, num_actions=tok.vocab_size - 1)
    digits_only = tokenizers.Tokenizer(models.BPE(unk_token="[UNK]"))
    digits_only.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.BpeTrainer(vocab_size=40, special_tokens=["[UNK]", "</s>"])
    digits_only.train_from_iterator([str(i) * 3 for i in range(100)], trainer)
    no_plus = jr.BPETokenizer(digits_only, eos="</s>")
    with pytest.raises(ValueError, match="cannot write the task's character '\\+'"):
        jr.with_tokenizer(char_task, no_plus)
    with pytest.raises(ValueError, match="not a reasoning task"):
        jr.with_tokenizer(jr.make("tic-tac-toe-v0"), tok)
    with pytest.raises(ValueError, match="tools are not supported over a pretrained tokenizer"):
        jr.with_tokenizer(jr.make("multiply-v0", tools="calc"), tok)
    with pytest.raises(ValueError, match="step search needs a character tokenizer"):
        default_step_ids(jr.with_tokenizer(char_task, tok))
    assert train_bpe().get_vocab_size() == tok.vocab_size - 1  # the fixture: the marker was added


def test_top_k_mcts_at_qwen_vocabulary(tok):
    env = jr.with_tokenizer(jr.make("addition-v0", num_digits=1), tok, num_actions=QWEN_VOCAB)
    config = jr.TransformerConfig(num_actions=QWEN_VOCAB, vocab_size=QWEN_VOCAB, max_length=env.spec.max_length,
                                  d_model=16, num_heads=2, num_layers=1, mlp_dim=32)  # fmt: skip
    model = jr.PolicyValueTransformer(config)
    params = model.init(jax.random.PRNGKey(0))
    states = jax.vmap(env.init)(jax.random.split(jax.random.PRNGKey(1), 2))
    search = jax.jit(lambda p, s, k: jr.mcts_policy(model, p, env, s, k, num_simulations=4, top_k=4))
    out = search(params, states, jax.random.PRNGKey(2))
    weights = np.asarray(out.action_weights)
    assert weights.shape == (2, QWEN_VOCAB)
    np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=1e-5)
    assert ((weights > 0) <= env._legal_mask).all() and (weights > 0).sum(-1).max() <= 4
    assert env._legal_mask[np.asarray(out.action)].all()
