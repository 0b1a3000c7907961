"""Tokenizer, registry and the token-MDP template, on a toy task written here."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrl_reason as jr
from jaxrl_reason.envs.tasks.base import extract_answer, extract_answer_text, response_window


class Echo(jr.ReasoningTask):
    """Toy task: the prompt is a digit d; the answer is d."""

    env_id = "echo-v0"
    response_alphabet = "0123456789"
    default_max_response_length = 4

    @property
    def max_prompt_length(self):
        return 2

    def sample_problem(self, key):
        return jax.random.randint(key, (), 0, 10, jnp.int32)

    def _render_prompt(self, problem):
        return (problem + self.tokenizer.id_of("0"))[None].astype(jnp.int32), jnp.int32(1)

    def _prompt_text_reference(self, d):
        return str(d["d"])

    def _check_answer(self, problem, answer, n):
        return (n == 1) & (answer[0] == problem + self.tokenizer.id_of("0"))

    def _check_answer_text(self, d, answer):
        return answer == str(d["d"])

    def problem_to_dict(self, problem):
        return {"d": int(problem)}

    def problem_from_dict(self, d):
        return jnp.int32(d["d"])

    def demonstration(self, d):
        return self.tokenizer.answer_marker + str(d["d"])


# -- tokenizer ----------------------------------------------------------------------------------------
def test_tokenizer_roundtrip_and_special_forms():
    tok = jr.Tokenizer()
    text = "12+3=15" + tok.answer_marker + "15" + tok.eos
    ids = tok.encode(text)
    assert ids[-1] == tok.eos_id and ids[-4] == tok.answer_id
    assert tok.decode(ids) == text
    assert tok.id_of("7") - tok.id_of("0") == 7  # digits are consecutive
    assert len(tok.encode(tok.pad + tok.bos)) == 2


def test_tokenizer_rejects_unknown_character_by_name():
    with pytest.raises(ValueError, match=r"'Q' at position 3"):
        jr.Tokenizer().encode("ab Q")
    with pytest.raises(ValueError, match="outside the vocabulary"):
        jr.Tokenizer().decode([10_000])


def test_tokenizer_refuses_ambiguous_special_forms():
    with pytest.raises(ValueError, match="outside the alphabet"):
        jr.Tokenizer(alphabet="abc<", special_forms=("<p>", "<b>", "<e>", "<a>"))


# -- registry -----------------------------------------------------------------------------------------
def test_registry_versions_duplicates_and_unknown_ids():
    jr.register("echo-v0", Echo)
    jr.register("echo-v1", lambda max_response_length=6: Echo(max_response_length=max_response_length))
    try:
        assert "echo-v0" in jr.registered_envs()
        assert jr.make("echo").max_response_length == 6  # latest version
        assert jr.make("echo-v0").max_response_length == 4
        assert jr.make("echo-v0", max_response_length=9).max_response_length == 9
        with pytest.raises(ValueError, match="already registered"):
            jr.register("echo-v0", Echo)
        with pytest.raises(ValueError, match="registered: .*addition-v0"):
            jr.make("nope-v0")
        with pytest.raises(ValueError, match="does not accept overrides"):
            jr.make("echo-v0", difficulty=3)
        with pytest.raises(ValueError, match="name-vN"):
            jr.register("bad id", Echo)
    finally:
        from jaxrl_reason.envs import registry

        registry._REGISTRY.pop("echo-v0", None)
        registry._REGISTRY.pop("echo-v1", None)


def test_lazy_string_entry_points_resolve():
    jr.register("echo-lazy-v0", "tests.test_core:Echo")
    try:
        assert type(jr.make("echo-lazy-v0")).__name__ == "Echo"
    finally:
        from jaxrl_reason.envs import registry

        registry._REGISTRY.pop("echo-lazy-v0")


# -- template invariants ------------------------------------------------------------------------------
def test_toy_task_passes_api_test():
    jr.api_test(Echo())


def test_step_invariants_by_hand():
    env, tok = Echo(), jr.DEFAULT_TOKENIZER
    s = env.init_from_problem(jnp.int32(7))
    assert env.prompt_text({"d": 7}) == "7" and int(s.length) == 2
    s = env.step(s, tok.answer_id)
    s = env.step(s, tok.id_of("7"))
    assert not s.done and float(s.rewards[0]) == 0.0
    s = env.step(s, tok.eos_id)
    assert s.terminated and float(s.rewards[0]) == 1.0 and bool(s.legal_action_mask.all())
    again = env.step(s, tok.id_of("3"))  # frozen, zero reward
    assert float(again.rewards[0]) == 0.0 and np.array_equal(again.tokens, s.tokens)
    # illegal action (a letter) ends the episode with the penalty 0
    s2 = env.step(env.init_from_problem(jnp.int32(7)), tok.id_of("z"))
    assert s2.terminated and float(s2.rewards[0]) == 0.0
    # the length limit truncates and still runs the verifier
    s3 = env.init_from_problem(jnp.int32(2))
    for t in [tok.id_of("1"), tok.id_of("1"), tok.answer_id, tok.id_of("2")]:
        s3 = env.step(s3, t)
    assert s3.truncated and not s3.terminated and float(s3.rewards[0]) == 1.0


def test_reward_needs_answer_for_every_registered_env():
    """Each env declares whether its reward reads a stored answer (a new env must be listed here)."""
    want = {
        "addition-v0": True,
        "countdown-v0": False,
        "letter-count-v0": True,
        "multiply-v0": True,
        "sort-v0": True,
        "tic-tac-toe-v0": False,
        "connect-four-v0": False,
    }
    assert set(jr.registered_envs()) == set(want)
    for env_id, needs in want.items():
        assert jr.make(env_id).spec.reward_needs_answer is needs, env_id
    assert Echo().spec.reward_needs_answer is True  # the safe default of a task that does not say


class BrokenEcho(Echo):
    def _step(self, state, action):
        state = super()._step(state, action)
        return state.replace(tokens=state.tokens.at[0].set(5))  # rewrites history


def test_api_test_catches_a_broken_env():
    with pytest.raises(AssertionError, match="changed earlier tokens"):
        jr.api_test(BrokenEcho())


def test_answer_extraction_jax_matches_python():
    tok = jr.DEFAULT_TOKENIZER
    rng = np.random.default_rng(0)
    size = 12
    for _ in range(300):
        n = int(rng.integers(0, size + 1))
        resp = rng.choice([tok.answer_id, tok.eos_id, tok.id_of("1"), tok.id_of("2"), tok.pad_id], n)
        tokens = np.concatenate([[tok.bos_id, tok.id_of("5")], resp, np.zeros(size - n, int)]).astype(np.int32)
        window, m = response_window(jnp.asarray(tokens), 2, 2 + n, size, eos_id=tok.eos_id, pad_id=tok.pad_id)
        answer, alen, ok = extract_answer(window, m, answer_id=tok.answer_id, pad_id=tok.pad_id)
        want = extract_answer_text(tok.decode(resp), tok)
        assert bool(ok) == (want is not None)
        if want is not None:
            assert tok.decode(np.asarray(answer)[: int(alen)]) == want
