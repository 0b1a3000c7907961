"""Our logits equal Hugging Face transformers' on the seeded tiny checkpoints of tests/hf_checkpoints.py.

The reference logits were computed once by scripts/make_hf_reference.py (transformers' own model
classes, float64) and stored in tests/data/hf_reference.{npz,json}; no torch is needed here.
"""

import json
import os

import jax
import numpy as np
import pytest

import jaxrl_reason as jr
from tests.hf_checkpoints import FAMILIES, write_checkpoint

DATA = os.path.join(os.path.dirname(__file__), "data")
with open(os.path.join(DATA, "hf_reference.json")) as f:
    META = json.load(f)
REFERENCE = np.load(os.path.join(DATA, "hf_reference.npz"))


def test_the_stored_reference_covers_every_family_with_todays_configs():
    assert sorted(META["families"]) == sorted(FAMILIES)
    for family, cfg in FAMILIES.items():  # a changed test config would need the script rerun
        assert META["families"][family] == json.loads(json.dumps(cfg)), family


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_logits_equal_transformers(tmp_path, family):
    write_checkpoint(tmp_path, FAMILIES[family], seed=META["seed"])
    model, params = jr.load_pretrained(str(tmp_path))
    ids, ref = REFERENCE[f"{family}/ids"], REFERENCE[f"{family}/logits"]
    logits, _ = jax.jit(model.apply)(params, ids)
    assert logits.shape == ref.shape
    np.testing.assert_allclose(np.asarray(logits), ref, atol=1e-4 * np.abs(ref).max(), rtol=0)
