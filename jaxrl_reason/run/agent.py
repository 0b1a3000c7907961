"""The playable :class:`Agent`: a trained policy-value network bound to its env, restored from a run directory.

``Agent.load(workdir)`` reads only the params (and the model config, env id and run config saved beside
them) from a run's checkpoint, whatever the algorithm's train-state layout, so restoring a run never
depends on the training code. ``Agent.act`` is one of the documented jit edges: it compiles one function
per (method, temperature, search options, mesh) and reuses it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from jaxrl_reason import parallel
from jaxrl_reason.config import saved_config
from jaxrl_reason.envs.registry import make
from jaxrl_reason.models import PolicyValueTransformer, TransformerConfig
from jaxrl_reason.models.sampling import mask_logits, sample_action
from jaxrl_reason.run.checkpoint import Checkpointer
from jaxrl_reason.run.pretrained import chat_options, over_tokenizer, saved_tokenizer
from jaxrl_reason.search import SearchConfig, mcts_policy, search_config_from
from jaxrl_reason.search.decoding import verifier_allowed
from jaxrl_reason.search.on_mesh import per_row
from jaxrl_reason.types import EnvState

METHODS = ("greedy", "sample", "mcts")


def test_time_search(config, env=None, **overrides: Any) -> SearchConfig:
    """The search a run's agent uses at test time: the run's self-play search (``selfplay.*``) with
    ``eval.num_simulations`` simulations, no Gumbel noise (deterministic) and, on tasks whose reward compares
    with a stored answer (``env.spec.reward_needs_answer``), no reward inside the tree; then `overrides`."""
    base = {"gumbel_scale": 0.0, "use_reward": verifier_allowed(env) if env is not None else True}
    if config is None or "selfplay" not in config:
        return SearchConfig(**base).replace(**overrides)
    if not base["use_reward"]:
        base["rollouts"] = 0  # random playouts are scored by the reward
    base["num_simulations"] = config.eval.num_simulations
    return search_config_from(config, **{**base, **overrides})


def checked_search(env, search: SearchConfig) -> SearchConfig:
    """`search`, refused (ValueError) if it would read a reward that compares with a stored answer."""
    verifier_allowed(env, search.use_reward)
    return search


def default_temperature(method: str, temperature: float | None) -> float:
    """``temperature`` as given, or the method's default: 1 for ``"sample"``, 0 (argmax) otherwise."""
    if temperature is None:
        return 1.0 if method == "sample" else 0.0
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0 (0: argmax), got {temperature}")
    return float(temperature)


def choose(key, logits, temperature: float):
    """argmax of ``logits [B, A]`` at temperature 0, else a sample at `temperature` (same meaning everywhere)."""
    if temperature == 0:
        return sample_action(key, logits, greedy=True)
    return sample_action(key, logits, temperature=temperature)


@dataclasses.dataclass
class Agent:
    """A trained policy-value network bound to its env, ready to act on batches of states."""

    model: PolicyValueTransformer
    params: Any
    env: Any
    config: Any = None
    #: a ``jax.sharding.Mesh``: :meth:`act` and :func:`jaxrl_reason.evaluate` split the batch over its devices
    #: (one search or rollout per example, :func:`jaxrl_reason.search.on_mesh.per_row`); None: the default device
    mesh: Any = None
    _jitted: dict = dataclasses.field(default_factory=dict, repr=False)

    @classmethod
    def load(cls, workdir: str, *, step: int | None = None, mesh=None) -> Agent:
        """Restores params, model config and env from a run's checkpoint (default: the latest) without
        writing anything; `mesh`: see :attr:`mesh` (e.g. ``jr.make_mesh()`` for all devices)."""
        with Checkpointer(workdir, read_only=True) as ckpt:
            meta = ckpt.restore_meta(step)
            params = ckpt.restore_params(step, sharding=parallel.replicated(parallel.make_mesh(-1, 1)))
        config = saved_config(meta["config"])
        model = PolicyValueTransformer(TransformerConfig(**meta["model"]))
        env = make(meta["env_id"], **meta["env_kwargs"])
        env = over_tokenizer(env, saved_tokenizer(workdir), model.config.num_actions, **chat_options(config))
        return cls(model=model, params=params, env=env, config=config, mesh=mesh)

    @property
    def search(self) -> SearchConfig:
        """The default test-time search (:func:`test_time_search` of the agent's run config and env)."""
        return test_time_search(self.config, self.env)

    def act(
        self,
        key: jax.Array,
        states: EnvState,
        *,
        method: str = "mcts",
        temperature: float | None = None,
        search: SearchConfig | None = None,
        **search_options: Any,
    ) -> jax.Array:
        """Actions ``[B]`` for a batch of states: search (``"mcts"``), ``"greedy"`` or ``"sample"``.

        ``temperature`` 0 takes the argmax (of the search policy for MCTS, of the policy otherwise); > 0
        samples at that temperature; None: 1 for ``"sample"``, 0 otherwise. The search is `search`
        (default :attr:`search`, the run's own settings) with `search_options` (``num_simulations=``,
        ``top_k=``, ``algorithm=``, ``rollouts=``, ...; see :class:`~jaxrl_reason.search.SearchConfig`).
        """
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        temperature = default_temperature(method, temperature)
        if method != "mcts" and (search is not None or search_options):
            raise ValueError(f"search options {sorted(search_options) or ['search']} apply to method='mcts' only")
        cfg = checked_search(self.env, (search or self.search).replace(**search_options)) if method == "mcts" else None
        fn = self._fn(("act", method, temperature, cfg, self.mesh), self._make_act, method, temperature, cfg)
        return fn(self.params, states, key)

    def _make_act(self, method: str, temperature: float, search: SearchConfig | None):
        model, env, mesh = self.model, self.env, self.mesh

        def act_one(params, states, key):  # one example (a batch of 1): a search or a forward
            if method == "mcts":
                out = mcts_policy(model, params, env, states, key, search=search)
                log_w = jnp.log(jnp.where(out.action_weights > 0, out.action_weights, 0.0))
                return choose(key, log_w, temperature)
            logits, _ = model.apply(params, states.tokens)
            logits = jnp.take_along_axis(logits, (states.length - 1)[:, None, None], 1)[:, 0]
            return choose(key, mask_logits(logits, states.legal_action_mask), temperature)

        # per example, key split(key, B)[b]: the same on any mesh
        return jax.jit(lambda params, states, key: per_row(act_one, mesh, params, states, key))

    def _fn(self, cache_key, factory, *args):
        if cache_key not in self._jitted:
            self._jitted[cache_key] = factory(*args)
        return self._jitted[cache_key]
