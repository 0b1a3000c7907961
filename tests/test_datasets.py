"""TFDS problem sets on disk (no TensorFlow, no internet): written, read back in order, used for
held-out evaluation (library and CLI), and a dataset made elsewhere feeds a host-verified task."""

import json
import os

import jax
import numpy as np
import pytest

from jaxrl_reason.datasets import read_problems, write_problems
from jaxrl_reason.envs.adapters.host import HostVerifiedTask
from jaxrl_reason.envs.registry import make
from jaxrl_reason.evaluation.cli import main as evaluate_main
from jaxrl_reason.evaluation.heldout import evaluate
from jaxrl_reason.problems import heldout_problems, write_heldout
from jaxrl_reason.run.agent import Agent
from jaxrl_reason.run.checkpoint import Checkpointer
from jaxrl_reason.training.state import build_model, build_optimizer, init_state
from jaxrl_reason.training.warm_start import run_meta as _meta

from .test_train import tiny_config

pytest.importorskip("tensorflow_datasets")


def test_write_read_roundtrip_keeps_order_and_rejects_bad_input(tmp_path):
    problems = [{"a": 9 - i, "b": i} for i in range(10)] + [{"numbers": [3, 1], "target": 4}]
    path = write_problems(problems, "mixed_set", data_dir=tmp_path)
    assert os.path.isfile(os.path.join(path, "dataset_info.json"))
    assert any(f.startswith("mixed_set-test.array_record") for f in os.listdir(path))
    assert read_problems("mixed_set", data_dir=tmp_path) == problems  # written order, exact dicts
    assert read_problems("mixed_set:1.0.0", data_dir=tmp_path, limit=3) == problems[:3]
    with pytest.raises(ValueError, match="already exists"):
        write_problems(problems, "mixed_set", data_dir=tmp_path)
    with pytest.raises(ValueError, match="snake_case"):
        write_problems(problems, "Bad-Name", data_dir=tmp_path)
    with pytest.raises(ValueError, match="not JSON-able"):
        write_problems([{"x": object()}], "bad_set", data_dir=tmp_path)
    with pytest.raises(ValueError, match="no TFDS dataset 'nope'.*mixed_set"):
        read_problems("nope", data_dir=tmp_path)
    with pytest.raises(ValueError, match="split 'train'"):
        read_problems("mixed_set", data_dir=tmp_path, split="train")


def test_heldout_set_from_tfds_evaluates_like_the_sampled_set(tmp_path, capsys):
    config = tiny_config()
    env = make(config.env_id, **config.env_kwargs)
    sampled = heldout_problems(env, config)
    write_heldout(env, config, "addition_heldout", data_dir=tmp_path / "tfds")
    # a run (checkpoint of a fresh state) that names the TFDS set in its config
    config.eval.tfds_name, config.eval.tfds_data_dir = "addition_heldout", str(tmp_path / "tfds")
    assert heldout_problems(env, config) == sampled
    model, tx = build_model(config, env), build_optimizer(config)
    state = init_state(config, env, model, tx)
    with Checkpointer(tmp_path / "run") as ck:
        ck.save(0, state, _meta(config, env))
    agent = Agent.load(str(tmp_path / "run"))
    direct = evaluate(agent, env, sampled, method="greedy", batch_size=8)
    assert direct["num_problems"] == len(sampled) == 8
    # the CLI on the TFDS set gives the same metrics as the in-memory set
    capsys.readouterr()  # drop TFDS's "preparing dataset" lines
    code = evaluate_main(
        [
            "--workdir",
            str(tmp_path / "run"),
            "--tfds_name",
            "addition_heldout",
            "--tfds_data_dir",
            str(tmp_path / "tfds"),
        ]
    )
    assert code == 0
    assert json.loads(capsys.readouterr().out) == direct
    assert evaluate_main(["--workdir", str(tmp_path / "run"), "--tfds_name", "nope", "--tfds_data_dir", "/x"]) == 2


def test_a_foreign_tfds_dataset_feeds_a_host_verified_task(tmp_path):
    """A word-problem set made elsewhere with its own features (question text, integer answer)."""
    import tensorflow_datasets as tfds

    rows = [("Tom has 3 apples and buys 4. How many?", 7), ("5 birds, 2 fly away. How many left?", 3)]

    class WordProblems(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            features = tfds.features.FeaturesDict({"question": tfds.features.Text(), "answer": np.int64})
            return tfds.core.DatasetInfo(builder=self, features=features, disable_shuffling=True)

        def _split_generators(self, dl_manager):
            return {"test": self._generate_examples()}

        def _generate_examples(self):
            for i, (q, a) in enumerate(rows):
                yield i, {"question": q, "answer": a}

    WordProblems.name = "word_problems"
    WordProblems(data_dir=str(tmp_path), file_format="array_record").download_and_prepare()
    problems = read_problems("word_problems", data_dir=tmp_path)
    assert problems == [{"question": q, "answer": a} for q, a in rows]

    def scorer(problem, response):
        answer = response.split("⟨ans⟩")[-1].strip()
        return float(answer == str(problem["answer"]))

    env = HostVerifiedTask(problems, scorer, prompt_key="question", answer_key="answer", max_response_length=8)
    demo = env.demonstration(problems[0])
    assert env.score_text(problems[0], demo) == 1.0 and env.score_text(problems[1], demo) == 0.0
    states = jax.vmap(env.init_from_problem)(jax.numpy.arange(2))
    assert np.asarray(states.prompt_length).tolist() == [1 + len(q) for q, _ in rows]
