"""A policy paired with a process reward model (PRM) as one model for test-time search."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class PolicyWithPRM:
    """A model for :func:`jr.decode` whose policy is ``policy`` and whose value head is the PRM ``prm``.

    Params are the pair ``(policy_params, prm_params)``. ``apply`` runs both networks (value =
    the PRM's), ``prefill``/``decode`` only the policy (sampling needs no values). FLOPs reported by
    ``decode`` count one network per forward; a full ``apply`` here costs two (same-size PRM).
    """

    policy: object
    prm: object

    @property
    def config(self):
        return self.policy.config

    def apply(self, params, tokens, **kwargs):
        logits, _ = self.policy.apply(params[0], tokens, **kwargs)
        _, values = self.prm.apply(params[1], tokens, **kwargs)
        return logits, values

    def prefill(self, params, tokens, lengths):
        return self.policy.prefill(params[0], tokens, lengths)

    def decode(self, params, cache, tokens, positions):
        return self.policy.decode(params[0], cache, tokens, positions)
