"""Problem sets as TFDS datasets on disk: fixed held-out sets shared across machines.

A problem set is a list of JSON-able dicts (``env.problem_to_dict`` of a task, or any dicts a host
verifier understands). :func:`write_problems` stores one as a TFDS dataset (ArrayRecord files, no
TensorFlow and no internet needed) under ``data_dir/name/version``; :func:`read_problems` reads it back
in the order written, so every machine of a run evaluates on exactly the same problems.

Each record holds the problem as canonical JSON under ``problem_json``. :func:`read_problems` also reads
TFDS datasets made elsewhere (e.g. a math word-problem set prepared on a connected machine): records
without ``problem_json`` become plain dicts of their features (bytes -> str, arrays -> lists), ready
for :class:`jaxrl_reason.HostVerifiedTask` (``prompt_key="question"``, a scorer of your own).

Needs the ``tfds`` extra (``pip install 'jaxrl_reason[tfds]'``): tensorflow-datasets, array_record,
importlib_resources. Example::

    import jaxrl_reason as jr
    from jaxrl_reason.datasets import write_problems, read_problems
    env = jr.make("addition-v0")
    problems = [env.problem_to_dict(env.sample_problem(k)) for k in jax.random.split(key, 100)]
    write_problems(problems, "addition_heldout", data_dir="/shared/tfds")
    assert read_problems("addition_heldout", data_dir="/shared/tfds") == problems
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

PROBLEM_FEATURE = "problem_json"
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def _tfds():
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ImportError(
            "TFDS problem sets need the 'tfds' extra: pip install 'jaxrl_reason[tfds]' "
            f"(tensorflow-datasets, array_record, importlib_resources); import failed with: {e}"
        ) from e
    return tfds


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"TFDS dataset name must be snake_case ([a-z][a-z0-9_]*), got {name!r}")


def write_problems(
    problems: Sequence[dict],
    name: str,
    *,
    data_dir: str | os.PathLike,
    split: str = "test",
    version: str = "1.0.0",
    description: str = "",
) -> str:
    """Writes `problems` (JSON-able dicts) as the `split` of TFDS dataset `name` under `data_dir`.

    Records keep their order. Returns the dataset's directory (``data_dir/name/version``). Raises
    ValueError on an empty set, a non-dict problem, a problem that is not JSON-able, or an existing
    dataset directory (datasets are immutable: pick a new version or name).
    """
    _check_name(name)
    if not problems:
        raise ValueError("write_problems needs at least one problem, got an empty list")
    rows = []
    for i, p in enumerate(problems):
        if not isinstance(p, dict):
            raise ValueError(f"problem {i} must be a dict, got {type(p).__name__}")
        try:
            rows.append(json.dumps(p, sort_keys=True))
        except TypeError as e:
            raise ValueError(f"problem {i} is not JSON-able ({e}): {p!r}") from e
    tfds = _tfds()
    data_dir = os.path.abspath(os.fspath(data_dir))
    target = os.path.join(data_dir, name, version)
    if os.path.exists(os.path.join(target, "dataset_info.json")):
        raise ValueError(f"TFDS dataset {name}:{version} already exists at {target}; use a new version or name")

    class _ProblemSet(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        VERSION = tfds.core.Version(version)

        def _info(self):
            return tfds.core.DatasetInfo(
                builder=self,
                description=description or f"jaxrl_reason problem set {name}",
                features=tfds.features.FeaturesDict({PROBLEM_FEATURE: tfds.features.Text()}),
                disable_shuffling=True,  # keep the written order (else records come back in hashed order)
            )

        def _split_generators(self, dl_manager):
            return {split: self._generate_examples()}

        def _generate_examples(self):
            for i, row in enumerate(rows):
                yield i, {PROBLEM_FEATURE: row}

    _ProblemSet.name = name
    builder = _ProblemSet(data_dir=data_dir, file_format="array_record")
    builder.download_and_prepare()
    return target


def read_problems(
    name: str, *, data_dir: str | os.PathLike, split: str = "test", limit: int | None = None
) -> list[dict]:
    """The problems of a TFDS dataset (``name`` or ``name:version``) as dicts, in record order.

    Datasets written by :func:`write_problems` give back exactly the dicts written; other datasets give
    one dict per record mapping feature names to Python values. Only ArrayRecord datasets can be read
    without TensorFlow. Raises ValueError when the dataset or split is missing.
    """
    tfds = _tfds()
    data_dir = os.path.abspath(os.fspath(data_dir))
    base = name.split(":")[0]
    if not os.path.isdir(os.path.join(data_dir, base)):
        have = (
            sorted(d for d in os.listdir(data_dir) if os.path.isdir(os.path.join(data_dir, d)))
            if os.path.isdir(data_dir)
            else []
        )
        raise ValueError(f"no TFDS dataset {base!r} under {data_dir!r}; datasets there: {have}")
    try:
        source = tfds.data_source(name, data_dir=data_dir, split=split)
    except Exception as e:  # tfds raises several types for missing splits / formats
        raise ValueError(f"cannot read split {split!r} of TFDS dataset {name!r} in {data_dir!r}: {e}") from e
    n = len(source) if limit is None else min(limit, len(source))
    return [_to_problem(source[i]) for i in range(n)]


def _to_problem(record: dict) -> dict:
    if PROBLEM_FEATURE in record:
        return json.loads(_py(record[PROBLEM_FEATURE]))
    return {k: _py(v) for k, v in record.items()}


def _py(x: Any) -> Any:
    if isinstance(x, bytes):
        return x.decode("utf-8")
    if isinstance(x, np.ndarray):
        if x.dtype.kind in ("S", "O"):
            return [_py(v) for v in x.tolist()]
        return x.tolist()
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, dict):
        return {k: _py(v) for k, v in x.items()}
    return x
