"""Tool calls inside the token MDP (#19): the calculator, host tools, the ToolUse env, the multiply task."""

import re
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrl_reason as jr
from jaxrl_reason.envs.tools import Calculator, HostTool, ToolUse, calculate_text, make_tool

CALC_ENV = jr.make("multiply-v0", tools=("calc",))
TOK = CALC_ENV.tokenizer
STEP = jax.jit(CALC_ENV.step)


def _play(env, problem_dict, text, step=STEP):
    state = env.init_from_problem(env.problem_from_dict(problem_dict))
    for token in env.tokenizer.encode(text):
        assert bool(state.legal_action_mask[token]), f"{env.tokenizer.decode([token])!r} illegal in {text!r}"
        state = step(state, token)
    return state


def _calc_jax(calls):
    width = 24
    ids = np.stack([TOK.encode_padded(c, width) for c in calls])
    n = np.asarray([len(c) for c in calls], np.int32)
    run = jax.jit(jax.vmap(lambda c, k: Calculator().run(TOK, c, k, jnp.bool_(True))))
    answers, lengths, ok = run(ids, n)
    return [TOK.decode(a[:m]) if o else None for a, m, o in zip(np.asarray(answers), lengths, ok, strict=True)]


def test_calculator_golden_values():
    calls = ["47*8", "5-9", "7/2", "8/2", "999999999+999999999", "999999999*3", "1000000000+1", "08+1", "3*", "*3"]
    calls += ["12", ""]
    expected = ["376", "-4", None, "4", "1999999998", None, None, None, None, None, None, None]
    assert [calculate_text(c) for c in calls] == expected
    assert _calc_jax(calls) == expected


def test_calculator_jax_equals_python_on_fuzzed_calls():
    rng = np.random.default_rng(0)
    calls = []
    for _ in range(400):
        kind = rng.integers(3)
        if kind == 0:  # well-formed
            a, b = (str(int(x)) for x in rng.integers(0, 10 ** rng.integers(1, 10, 2)))
            calls.append(a + "+-*/"[rng.integers(4)] + b)
        elif kind == 1:  # small, often exact division / negative results
            a, b = rng.integers(0, 100, 2)
            calls.append(f"{a}{'+-*/'[rng.integers(4)]}{b}")
        else:  # noise over the calculator's characters
            calls.append("".join(rng.choice(list("0123456789+-*/"), rng.integers(0, 12))))
    ours = _calc_jax(calls)
    assert ours == [calculate_text(c) for c in calls]
    assert sum(o is not None for o in ours) > 150  # the fuzz exercises answers, not only errors


def test_demonstration_replays_with_env_written_answers():
    state = _play(CALC_ENV, {"a": 347, "b": 25}, "[347*5=1735][347*20=6940][1735+6940=8675]<ans>8675<eos>")
    assert float(state.rewards[0]) == 1.0 and bool(state.terminated)
    tokens, written = np.asarray(state.tokens), np.asarray(CALC_ENV.written_mask(state))
    assert TOK.decode(tokens[written]) == "1735]6940]8675]"
    response = TOK.decode(tokens[int(state.prompt_length) : int(state.length)])
    # Written exactly at the tokens after each call's "=", up to and including "]".
    expected = np.zeros_like(written)
    for m in re.finditer(r"=([0-9]+\])", response):
        expected[int(state.prompt_length) + m.start(1) : int(state.prompt_length) + m.end(1)] = True
    np.testing.assert_array_equal(written, expected)
    assert {k: int(v) for k, v in CALC_ENV.tool_stats(state).items()} == {"tool_calls": 3, "tool_errors": 0}


def test_forced_tokens_are_the_only_legal_action_and_a_wrong_one_ends_the_episode():
    state = _play(CALC_ENV, {"a": 1, "b": 2}, "[12*7=")
    assert np.flatnonzero(np.asarray(state.legal_action_mask)).tolist() == [TOK.id_of("8")]
    bad = STEP(state, TOK.id_of("9"))  # the policy may not write the tool's answer
    assert bool(bad.terminated) and float(bad.rewards[0]) == 0.0
    after = _play(CALC_ENV, {"a": 1, "b": 2}, "[12*7=84]")
    assert bool(after.legal_action_mask[TOK.id_of("[")]) and not bool(after.legal_action_mask[TOK.id_of("]")])


def test_failed_and_too_long_calls_answer_the_error_token():
    for call in ("[3*=", "[" + "1" * 30 + "="):
        state = _play(CALC_ENV, {"a": 1, "b": 2}, call)
        state = _play_forced(state)
        assert CALC_ENV.response_text(state).endswith("=?]"), CALC_ENV.response_text(state)
        assert int(CALC_ENV.tool_stats(state)["tool_errors"]) == 1


def _play_forced(state, env=CALC_ENV, step=STEP):
    while int(np.asarray(state.legal_action_mask).sum()) == 1:
        state = step(state, int(np.argmax(state.legal_action_mask)))
    return state


def test_rollout_with_tool_calls_equals_stepping_the_env_by_hand():
    env = CALC_ENV
    model = jr.PolicyValueTransformer(jr.TransformerConfig.for_env(env.spec, d_model=16, num_heads=2, num_layers=1))
    params = model.init(jax.random.key(0))
    keys = jax.random.split(jax.random.key(1), 64)
    states = jax.vmap(env.init)(keys)
    traj = jax.jit(lambda s, k: jr.rollout(model, params, env, s, k, temperature=2.0))(states, jax.random.key(2))
    answered = 0
    for b in range(64):
        row = jax.tree.map(lambda x: x[b], traj.final_state)
        p0, n = int(row.prompt_length), int(row.length)
        by_hand = env.init_from_problem(jax.tree.map(lambda x: x[b], states.problem))
        for token in np.asarray(row.tokens)[p0:n]:
            by_hand = STEP(by_hand, int(token))
        np.testing.assert_array_equal(np.asarray(by_hand.tokens), np.asarray(row.tokens))
        np.testing.assert_array_equal(np.asarray(env.written_mask(by_hand)), np.asarray(env.written_mask(row)))
        text = env.response_text(row)
        for call, answer in re.findall(r"\[([^\[\]=]*)=([^\[\]=]*)\]", text):
            assert answer == (calculate_text(call) or "?"), text
            answered += 1
    assert answered >= 8  # a random policy calls the tool often enough to test it


def test_host_tool_answers_raises_and_times_out_without_stopping():
    def tool(text: str) -> str:
        if text == "boom":
            raise RuntimeError("tool failure")
        if text == "slow":
            time.sleep(0.5)
        return text[::-1]

    host = HostTool("rev", tool, timeout_s=0.2)
    env = jr.make("letter-count-v0", tools=(host,))
    step = jax.jit(env.step)
    problem = env.problem_to_dict(env.sample_problem(jax.random.key(0)))
    texts = {"{abc=": "cba}", "{boom=": "?}", "{slow=": "?}"}
    for call, reply in texts.items():
        state = _play_forced(_play(env, problem, call, step), env, step)
        assert env.response_text(state) == call + reply
    pair = jax.tree.map(lambda x: jnp.stack([x, x]), env.problem_from_dict(problem))
    batch = jax.vmap(env.init_from_problem)(pair)
    for token in env.tokenizer.encode("{ab="):
        batch = jax.vmap(env.step)(batch, jnp.full((2,), token))
    assert [env.tokenizer.decode([int(np.argmax(m))]) for m in np.asarray(batch.legal_action_mask)] == ["b", "b"]
    assert int(env.tool_stats(batch)["tool_calls"]) == 2


def test_api_test_passes_for_tool_envs():
    jr.api_test(CALC_ENV, num_episodes=4)


def test_bad_tool_setups_raise_clear_errors():
    with pytest.raises(ValueError, match="unknown tool 'abacus'"):
        jr.make("multiply-v0", tools=("abacus",))
    with pytest.raises(ValueError, match="one-player reasoning tasks"):
        jr.make("tic-tac-toe-v0", tools=("calc",))
    with pytest.raises(ValueError, match=r"lacks"):
        ToolUse(jr.make("multiply-v0"), ("calc",))  # the default alphabet has no "[" / "]"
    with pytest.raises(ValueError, match="distinct"):
        jr.make("multiply-v0", tools=("calc", Calculator()))
    assert make_tool("calc").name == "calc"
    assert [t.name for t in jr.make("multiply-v0", tools="calc").tools] == ["calc"]  # one name, not its letters


def test_multiply_task_demonstrations_and_lengths():
    env = jr.make("multiply-v0")
    jr.api_test(env, num_episodes=4)
    assert env.demonstration({"a": 347, "b": 25}) == "347*5=1735,347*20=6940,1735+6940=8675,<ans>8675"
    assert env.demonstration({"a": 12, "b": 30}) == "12*30=360,<ans>360"
    assert env.demonstration({"a": 5, "b": 0}) == "5*0=0,<ans>0"
    longest = CALC_ENV.demonstration({"a": 999, "b": 99}) + TOK.eos
    assert len(TOK.encode(longest)) <= CALC_ENV.max_response_length
    state = _play(CALC_ENV, {"a": 999, "b": 99}, longest)
    assert float(state.rewards[0]) == 1.0


def _after_call_12_times_7():
    """A random tiny policy and two copies of the state right after the model wrote ``[12*7=``."""
    env = CALC_ENV
    model = jr.PolicyValueTransformer(jr.TransformerConfig.for_env(env.spec, d_model=16, num_heads=2, num_layers=1))
    state = _play(env, {"a": 12, "b": 7}, "[12*7=")
    return env, model, model.init(jax.random.key(0)), jax.tree.map(lambda x: jnp.stack([x, x]), state)


def test_token_mcts_at_a_forced_state_plays_the_tools_answer():
    env, model, params, batch = _after_call_12_times_7()
    out = jr.mcts_policy(model, params, env, batch, jax.random.key(0), num_simulations=8, top_k=4)
    eight = TOK.id_of("8")
    assert np.asarray(out.action).tolist() == [eight, eight]
    np.testing.assert_allclose(np.asarray(out.action_weights)[:, eight], 1.0)


def test_step_mcts_candidates_start_with_the_tools_answer():
    env, model, params, batch = _after_call_12_times_7()
    out = jr.step_mcts_policy(
        model, params, env, batch, jax.random.key(0), num_simulations=4, num_candidates=3, max_step_length=6
    )
    forced = TOK.encode("84]")
    candidates, lengths = np.asarray(out.candidates), np.asarray(out.candidate_lengths)
    assert (lengths >= 3).all()
    assert (candidates[:, :, :3] == forced).all()  # every sampled step starts with the env's answer
