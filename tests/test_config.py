"""Config files, overrides and the CLI's argument parsing: every mistake is one clear error."""

import math
import pathlib
import re

import ml_collections
import pytest

from jaxrl_reason.config import _DOMAINS, ConfigError, base_config, load_config, validate
from jaxrl_reason.training.cli import main, parse_args

ROOT = pathlib.Path(__file__).resolve().parent.parent
CONFIG_FILES = sorted((ROOT / "configs").glob("*.py"))


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
        "    c.env_kwargs.num_numbers = (3, 4)\n"
        "    c.env_kwargs.ratio = (0.5, 1.0)\n"
        "    return c\n"
    )
    return str(path)


def write(tmp_path, text, name="bad.py"):
    path = tmp_path / name
    path.write_text(text)
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
            "selfplay.rescale_values=false",
            "distributed.enabled=yes",
        ],
    )
    assert c.total_steps == 20 and c.optim.learning_rate == 3e-4 and c.selfplay.search == "muzero"
    assert c.env_kwargs.num_digits == 3 and c.model.overrides.d_model == 64
    assert c.selfplay.rescale_values is False and c.distributed.enabled is True
    with pytest.raises(AttributeError):
        c.new_key = 1  # locked


@pytest.mark.parametrize(
    "raw, expected",
    [("3", (3, 3)), ("(3,3)", (3, 3)), ("3,3", (3, 3)), ("(2, 4)", (2, 4)), ("[2,4]", (2, 4)), (" 2 , 4 ", (2, 4))],
)
def test_tuple_key_takes_a_tuple_or_one_value(config_file, raw, expected):
    c = load_config(config_file, [f"env_kwargs.num_numbers={raw}"])
    assert c.env_kwargs.num_numbers == expected and type(c.env_kwargs.num_numbers) is tuple
    assert all(type(v) is int for v in c.env_kwargs.num_numbers)


def test_tuple_elements_take_the_existing_elements_type(config_file):
    c = load_config(config_file, ["env_kwargs.ratio=1"])
    assert c.env_kwargs.ratio == (1.0, 1.0) and all(type(v) is float for v in c.env_kwargs.ratio)


def test_real_countdown_config_takes_tuple_overrides_from_the_cli():
    countdown, grpo_countdown = str(ROOT / "configs/countdown.py"), str(ROOT / "configs/grpo_countdown.py")
    assert load_config(countdown).env_kwargs.num_numbers == (3, 4)
    assert load_config(countdown, ["env_kwargs.num_numbers=3"]).env_kwargs.num_numbers == (3, 3)
    assert load_config(countdown, ["env_kwargs.num_numbers=(3,3)"]).env_kwargs.num_numbers == (3, 3)
    # an int env kwarg (int-or-(min, max) in the env) may become a range, and stays an int given one
    assert load_config(grpo_countdown, ["env_kwargs.num_numbers=2,4"]).env_kwargs.num_numbers == (2, 4)
    assert load_config(grpo_countdown, ["env_kwargs.num_numbers=4"]).env_kwargs.num_numbers == 4


def test_new_free_form_keys_parse_as_json_then_tuple_then_string(config_file):
    c = load_config(
        config_file, ["env_kwargs.a=(1, 2)", "env_kwargs.b=true", "env_kwargs.c=abc", "model.overrides.d=0.5"]
    )
    assert c.env_kwargs.a == (1, 2) and c.env_kwargs.b is True and c.env_kwargs.c == "abc"
    assert c.model.overrides.d == 0.5


@pytest.mark.parametrize(
    "override, message",
    [
        ("total_step=5", r"unknown config key 'total_step'; did you mean 'total_steps'"),
        ("optim.learnin_rate=1", r"unknown config key 'optim.learnin_rate'; did you mean 'learning_rate'"),
        ("optm.grad_clip=1", r"unknown config key 'optm'; did you mean 'optim'"),
        ("total_steps=abc", r"'total_steps' expects an int, got 'abc'"),
        ("total_steps=2.5", r"'total_steps' expects an int, got '2.5'"),
        ("optim.grad_clip=nan", r"'optim.grad_clip' expects a finite float, got 'nan'"),
        ("optim.learning_rate=inf", r"'optim.learning_rate' expects a finite float, got 'inf'"),
        ("selfplay.rescale_values=maybe", r"'selfplay.rescale_values' expects a bool \(true/false\), got 'maybe'"),
        ("env_kwargs.num_numbers=x", r"expects a tuple of 2 ints like \(a, b\) or one int v meaning \(v, v\), got 'x'"),
        ("env_kwargs.num_numbers=(3,x)", r"'env_kwargs.num_numbers' expects a tuple of 2 ints .* got '\(3,x\)'"),
        ("env_kwargs.num_numbers=(3,4,5)", r"'env_kwargs.num_numbers' expects a tuple of 2 ints"),
        ("env_kwargs.num_numbers=3.5", r"'env_kwargs.num_numbers' expects a tuple of 2 ints"),
        ("env_kwargs.ratio=(a,b)", r"'env_kwargs.ratio' expects a tuple of 2 floats"),
        ("optim.lr=1", r"unknown config key 'optim.lr'"),
        ("seed", r"not of the form key=value"),
        ("optim=1", r"expects a group of keys"),
        ("total_steps.x=1", r"'total_steps' is a value, not a group"),
    ],
)
def test_bad_overrides_give_one_clear_error(config_file, override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(config_file, [override])


@pytest.mark.parametrize(
    "override, message",
    [
        ("total_steps=0", r"'total_steps' must be > 0, got 0"),
        ("seed=-1", r"'seed' must be >= 0, got -1"),
        ("log_every=0", r"'log_every' must be > 0, got 0"),
        ("keep_checkpoints=0", r"'keep_checkpoints' must be > 0"),
        ("optim.grad_clip=0", r"'optim.grad_clip' must be > 0, got 0.0"),
        ("optim.grad_clip=-1", r"'optim.grad_clip' must be > 0, got -1.0"),
        ("optim.learning_rate=0", r"'optim.learning_rate' must be > 0, got 0.0"),
        ("optim.warmup_steps=-1", r"'optim.warmup_steps' must be >= 0, got -1"),
        ("optim.end_learning_rate_ratio=1.5", r"'optim.end_learning_rate_ratio' must be in \[0, 1\], got 1.5"),
        ("optim.weight_decay=-0.1", r"'optim.weight_decay' must be >= 0"),
        ("sft.steps=-1", r"'sft.steps' must be >= 0, got -1"),
        ("sft.steps=50", r"sft.steps must be in \[0, total_steps=10\], got 50"),
        ("sft.batch_size=0", r"'sft.batch_size' must be > 0"),
        ("selfplay.num_simulations=0", r"'selfplay.num_simulations' must be >= 1, got 0"),
        ("selfplay.top_k=0", r"'selfplay.top_k' must be >= 1"),
        ("selfplay.max_depth=0", r"'selfplay.max_depth' must be >= 1"),
        ("selfplay.temperature=-0.5", r"'selfplay.temperature' must be >= 0"),
        ("selfplay.value_weight=-1", r"'selfplay.value_weight' must be >= 0"),
        ("selfplay.value_target_mix=1.5", r"'selfplay.value_target_mix' must be in \[0, 1\]"),
        ("selfplay.rollouts=-1", r"'selfplay.rollouts' must be >= 0, got -1"),
        ("selfplay.rollout_weight=1.5", r"'selfplay.rollout_weight' must be in \[0, 1\], got 1.5"),
        ("selfplay.value_warmup_steps=6", r"sft.steps \+ value_warmup_steps must be <= total_steps=10, got 5 \+ 6"),
        ("rl.clip_eps=0", r"'rl.clip_eps' must be in \(0, 1\), got 0.0"),
        ("rl.kl_coef=-0.1", r"'rl.kl_coef' must be >= 0"),
        ("rl.temperature=0", r"'rl.temperature' must be > 0"),
        ("rl.adv_eps=0", r"'rl.adv_eps' must be > 0"),
        ("init.step=-2", r"'init.step' must be >= 0 \(a checkpoint step\) or -1 \(the latest\), got -2"),
        ("distill.temperature=0", r"'distill.temperature' must be > 0"),
        ("eval.num_simulations=0", r"'eval.num_simulations' must be >= 1"),
        ("eval.method=beam", r"'eval.method' must be one of"),
        ("mesh.data=0", r"'mesh.data' must be a positive size or -1"),
        ("distributed.num_processes=-1", r"'distributed.num_processes' must be >= 0"),
        ("distributed.process_id=-2", r"'distributed.process_id' must be >= 0 or -1 \(detect\)"),
    ],
)
def test_out_of_domain_values_give_one_clear_error(config_file, override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(config_file, [override])


def test_domain_boundaries_are_accepted(config_file):
    c = load_config(
        config_file,
        [
            "seed=0",
            "optim.warmup_steps=0",
            "optim.end_learning_rate_ratio=0",
            "optim.weight_decay=0",
            "sft.steps=10",
            "selfplay.temperature=0",
            "selfplay.value_target_mix=1",
            "selfplay.rollout_weight=1",
            "rl.kl_coef=0",
            "init.step=-1",
            "mesh.data=-1",
            "distributed.process_id=-1",
        ],
    )
    assert c.sft.steps == c.total_steps == 10 and c.selfplay.temperature == 0.0 and c.init.step == -1


@pytest.mark.parametrize("algorithm", ["grpo", "rloo"])
def test_policy_gradient_needs_groups_of_two(config_file, algorithm):
    with pytest.raises(ConfigError, match=rf"rl.group_size must be >= 2 for {algorithm.upper()}.*got 1"):
        load_config(config_file, [f"algorithm={algorithm}", "rl.group_size=1"])
    assert load_config(config_file, [f"algorithm={algorithm}", "rl.group_size=2"]).rl.group_size == 2


def test_every_numeric_key_of_base_config_has_a_domain():
    def leaves(node, prefix=""):
        for key, value in node.items():
            if isinstance(value, ml_collections.ConfigDict):
                yield from leaves(value, f"{prefix}{key}.")
            else:
                yield prefix + key, value

    numeric = {k for k, v in leaves(base_config()) if isinstance(v, (int, float)) and not isinstance(v, bool)}
    assert numeric == set(_DOMAINS)


def test_nan_from_a_config_file_is_rejected(tmp_path):
    path = write(
        tmp_path,
        "from jaxrl_reason.config import base_config\ndef get_config():\n    c = base_config()\n"
        "    c.optim.learning_rate = float('nan')\n    return c\n",
    )
    with pytest.raises(ConfigError, match=r"'optim.learning_rate' must be > 0, got nan"):
        load_config(path)


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: p.name)
def test_every_shipped_config_loads_and_validates(path):
    c = load_config(path)
    assert c.is_locked and c.total_steps >= c.sft.steps
    validate(c)


def test_missing_file_and_unknown_file_keys(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.py")
    bad = write(
        tmp_path,
        "from jaxrl_reason.config import base_config\ndef get_config():\n    c = base_config()\n"
        "    c.unlock()\n    c.learning_rate = 1.0\n    return c\n",
    )
    with pytest.raises(ConfigError, match="unknown config key 'learning_rate'"):
        load_config(bad)


@pytest.mark.parametrize(
    "text, message",
    [
        ("x = 1\ndef get_config(:\n    pass\n", r"bad.py:2: syntax error in config file .*bad.py"),
        ("x = 1\n  y = 2\n", r"bad.py:2: syntax error in config file"),
        ("import os\nx = 1 / 0\n", r"bad.py:2: config file raised ZeroDivisionError: division by zero while loading"),
        ("import no_such_module_xyz\n", r"bad.py:1: config file raised ModuleNotFoundError"),
        ("x = 1\n", r"config file '.*bad.py' defines no get_config\(\)"),
        ("get_config = 3\n", r"defines no get_config\(\)"),
        ("def get_config():\n    return {}\n", r"get_config\(\) returned dict, expected a ConfigDict"),
        (
            "from jaxrl_reason.config import base_config\ndef get_config():\n    c = base_config()\n"
            "    c.total_steps = 'many'\n    return c\n",
            r"bad.py:4: get_config\(\) raised TypeError: .*total_steps",
        ),
    ],
)
def test_broken_config_file_gives_one_error_with_file_and_line(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text))


def test_non_python_config_file(tmp_path):
    with pytest.raises(ConfigError, match=r"is not a Python file"):
        load_config(write(tmp_path, "total_steps: 3\n", name="exp.yaml"))


def test_cli_prints_one_line_and_exits_2_for_a_broken_config(tmp_path, capsys):
    path = write(tmp_path, "def get_config(:\n")
    assert main(["--config", path, "--workdir", str(tmp_path / "w")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and re.match(r"error: .*bad.py:1: syntax error", err)
    assert not (tmp_path / "w").exists()
    assert main(["--config", str(ROOT / "configs/default.py"), "--workdir", "w", "--config.optim.grad_clip=0"]) == 2
    assert capsys.readouterr().err == "error: config key 'optim.grad_clip' must be > 0, got 0.0\n"


def test_cli_accepts_both_override_spellings():
    args, overrides = parse_args(["--config", "c.py", "--workdir", "w", "--config.seed=3", "--config.total_steps", "7"])
    assert args.config == "c.py" and args.workdir == "w"
    assert overrides == ["seed=3", "total_steps=7"]


def test_base_config_is_valid_and_validate_rejects_a_broken_copy():
    c = base_config()
    validate(c)  # the defaults are a valid run
    c.optim.grad_clip = 0.0
    with pytest.raises(ConfigError, match="optim.grad_clip"):
        validate(c)
    c = base_config()
    c.selfplay.rollout_weight = math.nan
    with pytest.raises(ConfigError, match="selfplay.rollout_weight"):
        validate(c)


def test_keys_named_in_the_docs_and_config_files_exist():
    texts = [(ROOT / "docs/training.md").read_text()] + [p.read_text() for p in CONFIG_FILES]
    named = {m for t in texts for m in re.findall(r"--config\.([a-z_][\w.]*[a-z_])", t)} - {"key"}  # placeholder
    assert {"seed", "total_steps", "algorithm", "init.workdir"} <= named
    base = base_config()
    for key in named:
        *parents, leaf = key.split(".")
        node = base
        for p in parents:
            node = node[p]
        assert leaf in node or parents in (["env_kwargs"], ["model", "overrides"]), key
