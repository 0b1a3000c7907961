"""Saving and loading a process reward model (Orbax params + the model config as JSON; never pickled)."""

from __future__ import annotations

import dataclasses
import json
import os

import jax
import orbax.checkpoint as ocp

from jaxrl_reason.models import PolicyValueTransformer, TransformerConfig


def save_prm(directory: str, model, params) -> None:
    """Writes the PRM (Orbax params + JSON model config) to `directory`."""
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "model.json"), "w") as f:
        json.dump(dataclasses.asdict(model.config), f, indent=2)
    path = os.path.abspath(os.path.join(directory, "params"))
    ckpt = ocp.StandardCheckpointer()
    ckpt.save(path, params, force=True)
    ckpt.wait_until_finished()


def load_prm(directory: str):
    """``(model, params)`` of a PRM written by :func:`save_prm`."""
    with open(os.path.join(directory, "model.json")) as f:
        model = PolicyValueTransformer(TransformerConfig(**json.load(f)))
    abstract = jax.eval_shape(model.init, jax.random.PRNGKey(0))
    params = ocp.StandardCheckpointer().restore(os.path.abspath(os.path.join(directory, "params")), abstract)
    return model, params
