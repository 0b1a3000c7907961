"""Config files, overrides and the CLI's argument parsing: every mistake is one clear error."""

import pytest

from jaxrl_reason.config import ConfigError, base_config, load_config
from jaxrl_reason.training.cli import parse_args


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "exp.py"
    path.write_text(
        "from jaxrl_reason.config import base_config\n"
        "def get_config():\n"
        "    c = base_config()\n"
        "    c.total_steps = 10\n"
        "    c.sft.steps = 5\n"
        "    c.env_kwargs.num_digits = 2\n"
        "    return c\n"
    )
    return str(path)


def test_overrides_are_parsed_by_type_and_config_is_locked(config_file):
    c = load_config(
        config_file,
        [
            "total_steps=20",
            "optim.learning_rate=3e-4",
            "env_kwargs.num_digits=3",
            "model.overrides.d_model=64",
            "selfplay.search=muzero",
        ],
    )
    assert c.total_steps == 20 and c.optim.learning_rate == 3e-4 and c.selfplay.search == "muzero"
    assert c.env_kwargs.num_digits == 3 and c.model.overrides.d_model == 64
    with pytest.raises(AttributeError):
        c.new_key = 1  # locked


@pytest.mark.parametrize(
    "override, message",
    [
        ("total_step=5", r"unknown config key 'total_step'; did you mean 'total_steps'"),
        ("total_steps=abc", r"'total_steps' expects an int, got 'abc'"),
        ("optim.lr=1", r"unknown config key 'optim.lr'"),
        ("seed", r"not of the form key=value"),
        ("total_steps=0", r"'total_steps' must be > 0"),
        ("eval.method=beam", r"'eval.method' must be one of"),
        ("sft.steps=50", r"sft.steps must be in \[0, total_steps=10\]"),
        ("optim=1", r"expects a group of keys"),
        ("selfplay.rollouts=-1", r"selfplay.rollouts must be >= 0 and selfplay.rollout_weight in \[0, 1\], got -1"),
        ("selfplay.rollout_weight=1.5", r"selfplay.rollout_weight in \[0, 1\], got 0, 1.5"),
    ],
)
def test_bad_overrides_give_one_clear_error(config_file, override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(config_file, [override])


def test_missing_file_and_unknown_file_keys(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.py")
    bad = tmp_path / "bad.py"
    bad.write_text(
        "from jaxrl_reason.config import base_config\ndef get_config():\n    c = base_config()\n"
        "    c.unlock()\n    c.learning_rate = 1.0\n    return c\n"
    )
    with pytest.raises(ConfigError, match="unknown config key 'learning_rate'"):
        load_config(bad)


def test_cli_accepts_both_override_spellings():
    args, overrides = parse_args(["--config", "c.py", "--workdir", "w", "--config.seed=3", "--config.total_steps", "7"])
    assert args.config == "c.py" and args.workdir == "w"
    assert overrides == ["seed=3", "total_steps=7"]


def test_base_config_is_valid_and_has_the_documented_keys():
    c = base_config()
    for key in ("seed", "env_id", "total_steps", "checkpoint_every", "eval_every"):
        assert key in c
