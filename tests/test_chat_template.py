"""Chat templates over a pretrained BPE tokenizer: rendering as transformers does, tasks whose prompt is a chat,
and ``model.chat_template`` runs (the template read from the model directory, kept in the workdir)."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrl_reason as jr
from jaxrl_reason.config import ConfigError, load_config
from jaxrl_reason.run.pretrained import (
    chat_options,
    check_saved_tokenizer,
    make_run_env,
    over_tokenizer,
    save_tokenizer,
    saved_tokenizer,
)
from jaxrl_reason.training.warm_start import check_compatible, run_meta
from tests.hf_checkpoints import FAMILIES, write_checkpoint
from tests.test_bpe_tokenizer import train_bpe, write_tokenizer

# Qwen's ChatML template, as in its tokenizer_config.json (without the default system message)
CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + "
    "'\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
OTHER = "{% for message in messages %}{{ message['role'] + ': ' + message['content'] + '\n' }}{% endfor %}"


def _write(path, *, chat_template=None, jinja=None, tok=None):
    """A tokenizer directory (tokenizer.json + tokenizer_config.json), its config's chat_template set."""
    path.mkdir(parents=True, exist_ok=True)
    write_tokenizer(path, tok)
    if chat_template is not None:
        config = json.loads((path / "tokenizer_config.json").read_text())
        (path / "tokenizer_config.json").write_text(json.dumps({**config, "chat_template": chat_template}))
    if jinja is not None:
        (path / "chat_template.jinja").write_text(jinja)
    return path


@pytest.fixture(scope="module")
def base():
    return train_bpe()


@pytest.fixture(scope="module")
def tok(tmp_path_factory, base):
    return jr.BPETokenizer.from_pretrained(str(_write(tmp_path_factory.mktemp("chatml"), chat_template=CHATML)))


def test_renders_chatml_as_written_by_hand(tok):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+3?"}]
    golden = "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWhat is 2+3?<|im_end|>\n"
    assert tok.chat_template == CHATML
    assert tok.apply_chat_template(messages) == golden + "<|im_start|>assistant\n"
    assert tok.apply_chat_template(messages, add_generation_prompt=False) == golden
    # the special forms read back as one token each
    ids = tok.encode(tok.apply_chat_template(messages))
    assert ids.count(tok.id_of("<|im_start|>")) == 3 and ids.count(tok.eos_id) == 2  # eos is <|im_end|>


def test_block_whitespace_and_special_tokens_as_transformers(base):
    # trim_blocks drops the newline after a block tag, lstrip_blocks the indentation before one
    template = (
        "{{ bos_token }}{% for m in messages %}\n"
        "    {% if m['role'] == 'user' %}\n"
        "[{{ m['content'] }}]\n"
        "    {% endif %}\n"
        "{% endfor %}{{ eos_token }}"
    )
    tok = jr.BPETokenizer(base, eos="<|im_end|>", bos="<|endoftext|>", chat_template=template)
    messages = [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "x"},
        {"role": "user", "content": "b"},
    ]
    assert tok.apply_chat_template(messages) == "<|endoftext|>[a]\n[b]\n<|im_end|>"
    # no BOS (Qwen): bos_token is undefined and renders as nothing
    assert jr.BPETokenizer(base, eos="<|im_end|>", chat_template=template).apply_chat_template(messages) == (
        "[a]\n[b]\n<|im_end|>"
    )


def test_loop_controls_tojson_and_no_clock(base):
    template = (
        "{% for m in messages %}{% if loop.index > 1 %}{% break %}{% endif %}{{ m | tojson }}{% endfor %}"
        "{% if strftime_now is defined %}{{ strftime_now('%Y') }}{% else %} 26 Jul 2024{% endif %}"
    )
    tok = jr.BPETokenizer(base, eos="<|im_end|>", chat_template=template)
    messages = [{"role": "user", "content": "é"}, {"role": "user", "content": "b"}]
    assert tok.apply_chat_template(messages) == '{"role": "user", "content": "é"} 26 Jul 2024'


def test_template_sources(tmp_path, base):
    named = [{"name": "tool_use", "template": OTHER}, {"name": "default", "template": CHATML}]
    assert jr.BPETokenizer.from_pretrained(str(_write(tmp_path / "list", chat_template=named))).chat_template == CHATML
    no_default = _write(tmp_path / "nodefault", chat_template=named[:1])
    assert jr.BPETokenizer.from_pretrained(str(no_default)).chat_template is None
    # a chat_template.jinja (transformers >= 4.50 saves it apart) wins over the config's, as transformers reads it
    both = _write(tmp_path / "jinja", chat_template=OTHER, jinja=CHATML)
    assert jr.BPETokenizer.from_pretrained(str(both)).chat_template == CHATML
    assert jr.BPETokenizer.from_pretrained(str(both), chat_template=OTHER).chat_template == OTHER  # the argument wins
    assert jr.BPETokenizer.from_pretrained(str(_write(tmp_path / "none"))).chat_template is None
    with pytest.raises(ValueError, match="chat_template must be a string or a list"):
        jr.BPETokenizer.from_pretrained(str(_write(tmp_path / "bad", chat_template={"default": CHATML})))


def test_errors(base, tok):
    refusing = (
        "{% if messages[0]['role'] != 'user' %}{{ raise_exception('the first message must be the user') }}{% endif %}"
    )
    strict = jr.BPETokenizer(base, eos="<|im_end|>", chat_template=refusing)
    assert strict.apply_chat_template([{"role": "user", "content": "hi"}]) == ""
    with pytest.raises(ValueError, match="the chat template refused the messages: the first message must be the user"):
        strict.apply_chat_template([{"role": "assistant", "content": "hi"}])
    plain = jr.BPETokenizer(base, eos="<|im_end|>")
    with pytest.raises(ValueError, match="this tokenizer has no chat template: expected chat_template="):
        plain.apply_chat_template([{"role": "user", "content": "hi"}])
    with pytest.raises(ValueError, match="not a valid Jinja template"):
        jr.BPETokenizer(base, eos="<|im_end|>", chat_template="{% for m in messages %}")
    with pytest.raises(ValueError, match="message 0: expected a dict with 'role'"):
        tok.apply_chat_template([{"content": "hi"}])


def test_template_is_part_of_the_identity(base):
    a = jr.BPETokenizer(base, eos="<|im_end|>", chat_template=CHATML)
    assert a == jr.BPETokenizer(base, eos="<|im_end|>", chat_template=CHATML)
    assert hash(a) == hash(jr.BPETokenizer(base, eos="<|im_end|>", chat_template=CHATML))
    for other in (
        jr.BPETokenizer(base, eos="<|im_end|>", chat_template=OTHER),
        jr.BPETokenizer(base, eos="<|im_end|>"),
    ):
        assert a != other and hash(a) != hash(other)


def _play(env, problem_dict, texts, tok):
    """The env's total reward for writing each of `texts` (then EOS) after the prompt of `problem_dict`, and the
    final states (one batch, one compile)."""
    ids = [tok.encode(t) + [tok.eos_id] for t in texts]
    width = max(map(len, ids))
    actions = np.asarray([x + [tok.eos_id] * (width - len(x)) for x in ids], np.int32)
    problems = jax.tree.map(lambda x: jnp.stack([x] * len(texts)), env.problem_from_dict(problem_dict))
    state = jax.vmap(env.init_from_problem)(problems)
    step, total = jax.jit(jax.vmap(env.step)), np.zeros(len(texts))
    for j in range(width):
        state = step(state, jnp.asarray(actions[:, j]))
        total += np.asarray(state.rewards[:, 0])
    assert bool(state.done.all())
    return state, total


def test_a_task_with_a_chat_prompt(tok):
    char = jr.make("addition-v0", num_digits=2)
    env = jr.with_tokenizer(char, tok, chat=True)
    plain = jr.with_tokenizer(char, tok)
    d = {"a": 12, "b": 7}
    golden = "<|im_start|>user\n12+7=<|im_end|>\n<|im_start|>assistant\n"
    state = env.init_from_problem(env.problem_from_dict(d))
    n = int(state.prompt_length)
    assert int(state.tokens[0]) == tok.eos_id  # no BOS (Qwen): EOS opens the episode, as without the template
    assert np.asarray(state.tokens[1:n]).tolist() == tok.encode(golden)
    assert env.prompt_text(d) == env._prompt_text_reference(d) == golden
    assert plain.prompt_text(d) == "12+7="
    # the buffer grows by the template's own tokens
    empty = "<|im_start|>user\n<|im_end|>\n<|im_start|>assistant\n"
    assert env.max_prompt_length == char.max_prompt_length + len(tok.encode(empty)) > plain.max_prompt_length
    assert env.spec.max_length == plain.spec.max_length + len(tok.encode(empty))
    # response, answer marker and reward as without the template
    demo = env.demonstration(d)
    assert demo == plain.demonstration(d) and tok.answer_marker + "19" in demo
    assert env.score_text(d, demo) == 1.0
    wrong = demo[: -len("19")] + "18"
    state, total = _play(env, d, [demo, wrong], tok)
    assert total.tolist() == [1.0, 0.0] and env.score_text(d, wrong) == 0.0
    assert env.response_text(jax.tree.map(lambda x: x[0], state)) == demo


def test_a_system_message_and_a_template_that_writes_bos(base):
    tok = jr.BPETokenizer(base, eos="<|im_end|>", bos="<|endoftext|>", chat_template="{{ bos_token }}" + CHATML)
    env = jr.with_tokenizer(jr.make("addition-v0", num_digits=2), tok, chat=True, system="Add.")
    state = env.init_from_problem(env.problem_from_dict({"a": 3, "b": 40}))
    golden = "<|im_start|>system\nAdd.<|im_end|>\n<|im_start|>user\n3+40=<|im_end|>\n<|im_start|>assistant\n"
    assert int(state.tokens[0]) == tok.bos_id  # the env's BOS, not the template's a second time
    assert np.asarray(state.tokens[1 : int(state.prompt_length)]).tolist() == tok.encode(golden)


def test_task_errors(base, tok):
    char = jr.make("addition-v0", num_digits=2)
    with pytest.raises(ValueError, match="addition-v0: chat=True formats the prompt with the tokenizer's chat"):
        jr.with_tokenizer(char, jr.BPETokenizer(base, eos="<|im_end|>"), chat=True)
    with pytest.raises(ValueError, match="needs chat=True"):
        jr.with_tokenizer(char, tok, system="Add.")
    host = jr.HostVerifiedTask([{"prompt": "1+1=", "answer": "2"}], lambda d, a: float(a == d["answer"]))
    with pytest.raises(ValueError, match="chat templates apply to the built-in tasks only"):
        jr.with_tokenizer(host, tok, chat=True)


CONFIG = """
from jaxrl_reason.config import base_config

def get_config():
    c = base_config()
    c.env_id = "addition-v0"
    c.env_kwargs.num_digits = 2
    return c
"""
VOCAB = 416  # the model's rows: the tokenizer's 401 (answer marker included) + padding


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("qwen")
    write_checkpoint(str(path), {**FAMILIES["qwen2"], "vocab_size": VOCAB}, seed=3)
    _write(path, jinja=CHATML)
    return path


def test_a_pretrained_run_with_a_chat_template(tmp_path, model_dir):
    cfg = tmp_path / "c.py"
    cfg.write_text(CONFIG)
    on = [f"model.pretrained={model_dir}", "model.chat_template=True", "model.system_prompt=Add."]
    config = load_config(cfg, on)
    env = make_run_env(config)
    assert env.chat and env.system == "Add." and env.spec.num_actions == VOCAB
    assert env.prompt_text({"a": 1, "b": 2}) == (
        "<|im_start|>system\nAdd.<|im_end|>\n<|im_start|>user\n1+2=<|im_end|>\n<|im_start|>assistant\n"
    )
    assert not make_run_env(load_config(cfg, [f"model.pretrained={model_dir}"])).chat  # off by default
    # the workdir keeps the template (chat_template.jinja); Agent.load's env is the run's
    save_tokenizer(config, str(tmp_path / "w"))
    saved = saved_tokenizer(str(tmp_path / "w"))
    assert saved == env.tokenizer and saved.chat_template == CHATML
    again = over_tokenizer(jr.make("addition-v0", num_digits=2), saved, VOCAB, **chat_options(config))
    assert again.prompt_text({"a": 1, "b": 2}) == env.prompt_text({"a": 1, "b": 2})
    check_saved_tokenizer(str(tmp_path / "w"), env)  # unchanged: no error
    char = jr.make("addition-v0", num_digits=2)
    retemplated = jr.BPETokenizer(env.tokenizer.backend, eos="<|im_end|>", pad="<|endoftext|>", chat_template=OTHER)
    with pytest.raises(ConfigError, match="holds a run over another tokenizer"):
        check_saved_tokenizer(str(tmp_path / "w"), jr.with_tokenizer(char, retemplated, num_actions=VOCAB, chat=True))
    # a run without chat ignores the template, not the special tokens
    check_saved_tokenizer(str(tmp_path / "w"), jr.with_tokenizer(char, retemplated, num_actions=VOCAB))
    other_pad = jr.BPETokenizer(env.tokenizer.backend, eos="<|im_end|>", pad="<|im_start|>", chat_template=CHATML)
    with pytest.raises(ConfigError, match="holds a run over another tokenizer"):
        check_saved_tokenizer(str(tmp_path / "w"), jr.with_tokenizer(char, other_pad, num_actions=VOCAB))
    # a resumed run checks the chat options; runs saved before them had none
    meta = run_meta(config, env)
    assert meta["chat"] == {"chat": True, "system": "Add."}
    check_compatible(json.loads(json.dumps(meta)), meta, "w")
    plain_config = load_config(cfg, [f"model.pretrained={model_dir}"])
    plain = run_meta(plain_config, make_run_env(plain_config))
    check_compatible({k: v for k, v in plain.items() if k != "chat"}, plain, "w")
    with pytest.raises(ConfigError, match="holds a run with chat="):
        check_compatible(plain, meta, "w")


def test_config_errors(tmp_path, model_dir):
    cfg = tmp_path / "c.py"
    cfg.write_text(CONFIG)
    with pytest.raises(ConfigError, match="model.chat_template=True formats prompts .* needs model.pretrained"):
        load_config(cfg, ["model.chat_template=True"])
    with pytest.raises(ConfigError, match="model.system_prompt .* needs model.chat_template=True"):
        load_config(cfg, [f"model.pretrained={model_dir}", "model.system_prompt=Add."])
    no_template = tmp_path / "no_template"
    write_checkpoint(str(no_template), {**FAMILIES["qwen2"], "vocab_size": VOCAB}, seed=3)
    _write(no_template)
    with pytest.raises(ConfigError, match="has no chat template"):
        make_run_env(load_config(cfg, [f"model.pretrained={no_template}", "model.chat_template=True"]))
