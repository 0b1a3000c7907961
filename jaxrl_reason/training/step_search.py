"""Step-level self-play (``algorithm="step_search"``): search over reasoning steps, imitate what it found.

Expert iteration with a search as the expert (ReST-MCTS*, rStar-Math; AlphaZero at step level):

* ``collect``: ``rl.num_problems`` training problems (never held-out ones), ``rl.group_size`` searched
  episodes each: :func:`jr.decode` with ``method="step_mcts"`` (:func:`jr.step_mcts_policy` at every step,
  the chosen step played whole; Gumbel noise makes the ``G`` episodes of a problem differ). The tree judges
  finished responses by the verifier where test-time search may (``not env.spec.reward_needs_answer``:
  countdown), else by the value head, so self-play trains the search that runs at test time.
* ``update``: expert iteration's update (:mod:`jaxrl_reason.training.star`): cross-entropy on the kept
  episodes, ``step_search.keep="correct"`` (those the verifier accepts) or ``"all"`` (every path the search
  chose, AlphaZero-style), plus, with ``star.value_weight > 0``, the value head regressed to each episode's
  outcome (the leaf value the search then uses).
"""

from __future__ import annotations

from jaxrl_reason.search.decoding import decode
from jaxrl_reason.training import star
from jaxrl_reason.training.policy_gradient import group_states


def search_kwargs(config) -> dict:
    s = config.step_search
    return {
        "num_simulations": int(s.num_simulations),
        "num_candidates": int(s.num_candidates),
        "max_step_length": int(s.max_step_length),
        "max_depth": int(s.max_depth),
        "candidate_temperature": float(config.rl.temperature),
    }


def searched_responses(ctx, state):
    """``(final states, reward)`` of step-MCTS episodes, ``rl.group_size`` per problem."""
    states, key = group_states(ctx, state, ctx.config.rl.num_problems)
    out = decode(ctx.model, state.params, ctx.env, states, key, method="step_mcts", **search_kwargs(ctx.config))
    return out.final_state, out.returns[:, 0]


def build(ctx):
    if ctx.env.spec.num_players != 1:
        raise ValueError(f"algorithm 'step_search' is for one-player tasks; {ctx.env.spec.env_id} has players")
    return star.build(ctx, searched_responses, keep_all=ctx.config.step_search.keep == "all")
