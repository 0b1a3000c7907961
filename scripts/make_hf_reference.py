"""Reference logits from Hugging Face transformers for tests/test_hf_reference.py (not run in CI).

Writes each tiny random checkpoint of tests/hf_checkpoints.py (seeded), runs it with transformers'
own model class in float64 on fixed token ids, and stores the logits (float32) with the seeds, the ids
and the package versions in tests/data/hf_reference.npz and tests/data/hf_reference.json.

Needs torch and transformers, which the project never installs (a CUDA torch is a multi-GB
environment); use a separate virtualenv:

    python3 -m venv /work/venv-hf && /work/venv-hf/bin/pip install torch transformers safetensors numpy
    /work/venv-hf/bin/python scripts/make_hf_reference.py            # writes tests/data/hf_reference.*
    /work/venv-hf/bin/python scripts/make_hf_reference.py --check DIR  # prints logits of a saved model

``--check DIR`` loads a directory written by ``jr.save_pretrained`` with transformers and writes its
logits on ``DIR/ids.npy`` to ``DIR/hf_logits.npy`` (to compare with ours by hand).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

import numpy as np
import torch
import transformers

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from tests.hf_checkpoints import FAMILIES, write_checkpoint  # noqa: E402

SEED = 11
IDS_SEED = 5
LENGTH = 8
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data")


def hf_logits(path: str, ids: np.ndarray) -> np.ndarray:
    """[B, T, V] logits of transformers' model for the directory, computed in float64."""
    model = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float64, attn_implementation="eager")
    model.eval()
    with torch.no_grad():
        out = model(input_ids=torch.as_tensor(ids, dtype=torch.long))
    return out.logits.numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", default=None, help="a directory written by jr.save_pretrained (with ids.npy)")
    args = parser.parse_args()
    if args.check:
        ids = np.load(os.path.join(args.check, "ids.npy"))
        np.save(os.path.join(args.check, "hf_logits.npy"), hf_logits(args.check, ids))
        return
    arrays, meta = {}, {"seed": SEED, "ids_seed": IDS_SEED, "torch": torch.__version__,
                        "transformers": transformers.__version__, "families": {}}  # fmt: skip
    for family, cfg in sorted(FAMILIES.items()):
        ids = np.random.default_rng(IDS_SEED).integers(0, cfg["vocab_size"], (1, LENGTH)).astype(np.int32)
        with tempfile.TemporaryDirectory() as tmp:
            write_checkpoint(tmp, cfg, SEED)
            logits = hf_logits(tmp, ids)
        arrays[f"{family}/ids"] = ids
        arrays[f"{family}/logits"] = logits.astype(np.float32)
        meta["families"][family] = cfg
        print(f"{family}: logits {logits.shape}, max |logit| {np.abs(logits).max():.3f}")
    os.makedirs(OUT, exist_ok=True)
    np.savez_compressed(os.path.join(OUT, "hf_reference.npz"), **arrays)
    with open(os.path.join(OUT, "hf_reference.json"), "w") as f:
        json.dump(meta, f, indent=2)


if __name__ == "__main__":
    main()
