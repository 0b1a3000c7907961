"""A pretrained model's BPE tokenizer (``tokenizer.json``, through the ``tokenizers`` library) behind the
project's tokenizer interface.

Like the character :class:`~jaxrl_reason.envs.tokenizer.Tokenizer`, it gives ``encode``/``decode``,
``encode_padded``, ``id_of``/``ids_of``, the special tokens' ids (``pad_id``, ``bos_id``, ``eos_id``,
``answer_id``) and their text forms (``pad``, ``bos``, ``eos``, ``answer_marker``), which ``encode``
reads back as one token each, so a response can be written as text::

    tok = BPETokenizer.from_pretrained("path/to/Qwen2.5-0.5B")
    ids = tok.encode("2+3=5" + tok.answer_marker + "5" + tok.eos)
    tok.decode(ids) == "2+3=5" + tok.answer_marker + "5" + tok.eos

The special tokens come from ``tokenizer_config.json`` when the directory has one (``pad_token``,
``bos_token``, ``eos_token``), else from the arguments. The answer marker (default ``"<answer>"``) must
be one token: when the vocabulary lacks it, it is added as a special token with the next free id
(``vocab_size`` grows by one), which must fit the model's embedding table (Qwen's has room: 151,936
rows for 151,665 tokens).

A tokenizer may carry a Hugging Face chat template (Jinja), read from ``tokenizer_config.json``'s
``chat_template`` or a ``chat_template.jinja`` file; :meth:`BPETokenizer.apply_chat_template` renders a
conversation with it as transformers does::

    tok.apply_chat_template([{"role": "user", "content": "What is 2+3?"}])
    # Qwen: "<|im_start|>system\n...<|im_end|>\n<|im_start|>user\nWhat is 2+3?<|im_end|>\n<|im_start|>assistant\n"
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence

import jinja2
import jinja2.ext
import jinja2.sandbox
import numpy as np
import tokenizers

TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
CHAT_TEMPLATE_FILE = "chat_template.jinja"  # newer transformers save the template apart from the config
DEFAULT_ANSWER_MARKER = "<answer>"


def _token_text(value) -> str | None:
    """A special token in ``tokenizer_config.json``: a string, ``{"content": ...}`` or null."""
    if isinstance(value, dict):
        return value.get("content")
    return value


def _config_chat_template(value, source: str) -> str | None:
    """``chat_template`` of ``tokenizer_config.json``: a string, or a list of ``{"name", "template"}`` (the one
    named "default" is used, as transformers does when no name is given; None when there is none)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(t, dict) and {"name", "template"} <= set(t) for t in value):
        return next((t["template"] for t in value if t["name"] == "default"), None)
    raise ValueError(
        f"{source}: chat_template must be a string or a list of {{'name', 'template'}} dicts, got {value!r:.200}"
    )


def _raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def _tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _compile_chat_template(template: str) -> jinja2.Template:
    """The Jinja environment of transformers' ``apply_chat_template``: sandboxed, ``trim_blocks`` and
    ``lstrip_blocks``, loop controls, the ``tojson`` filter and ``raise_exception``. Not its ``strftime_now``:
    prompts must not change with the date (templates that use it, Llama 3.2's, fall back to a fixed date)."""
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    try:
        return env.from_string(template)
    except jinja2.exceptions.TemplateSyntaxError as e:
        raise ValueError(f"chat_template is not a valid Jinja template (line {e.lineno}): {e.message}") from None


class BPETokenizer:
    """Maps text to int32 token ids and back with a ``tokenizers.Tokenizer``. Immutable and hashable.

    Args:
      tokenizer: a ``tokenizers.Tokenizer`` (copied: the caller's object is never changed).
      eos: text of the end-of-sequence token (one token of the vocabulary).
      pad: text of the padding token (default: `eos`, as Llama and Qwen do).
      bos: text of the beginning-of-sequence token, or ``None`` when the model has none (Qwen).
      answer_marker: text of the answer marker; added as a special token if the vocabulary lacks it.
      chat_template: a Hugging Face chat template (Jinja source) for :meth:`apply_chat_template`, or None.
        Part of the tokenizer's identity (equality and hash).
    """

    def __init__(
        self,
        tokenizer: tokenizers.Tokenizer,
        *,
        eos: str,
        pad: str | None = None,
        bos: str | None = None,
        answer_marker: str = DEFAULT_ANSWER_MARKER,
        chat_template: str | None = None,
    ):
        if not isinstance(tokenizer, tokenizers.Tokenizer):
            raise ValueError(f"expected a tokenizers.Tokenizer, got {type(tokenizer).__name__}")
        tok = tokenizers.Tokenizer.from_str(tokenizer.to_str())
        if not answer_marker:
            raise ValueError("answer_marker: expected a non-empty string")
        if tok.token_to_id(answer_marker) is None:
            tok.add_special_tokens([tokenizers.AddedToken(answer_marker, special=True, normalized=False)])
        self._tok = tok
        self._json = tok.to_str()
        self._forms = (pad if pad is not None else eos, bos, eos, answer_marker)
        ids = []
        for role, form in zip(("pad", "bos", "eos", "answer_marker"), self._forms, strict=True):
            if form is None:
                ids.append(None)
                continue
            tid = tok.token_to_id(form)
            if tid is None:
                raise ValueError(f"{role} token {form!r} is not one token of the vocabulary")
            ids.append(tid)
        self.pad_id, self.bos_id, self.eos_id, self.answer_id = ids
        self._vocab_size = tok.get_vocab_size(with_added_tokens=True)
        if chat_template is not None and not isinstance(chat_template, str):
            raise ValueError(f"chat_template: expected Jinja source (str) or None, got {type(chat_template).__name__}")
        self._chat_template = chat_template
        self._compiled = None if chat_template is None else _compile_chat_template(chat_template)
        self._hash = int.from_bytes(hashlib.sha256(repr(self._key()).encode()).digest()[:8], "little")

    @classmethod
    def from_pretrained(
        cls, path: str, *, eos: str | None = None, pad: str | None = None, bos: str | None = None,
        answer_marker: str = DEFAULT_ANSWER_MARKER, chat_template: str | None = None,
    ) -> BPETokenizer:  # fmt: skip
        """From a Hugging Face directory (``tokenizer.json``, optional ``tokenizer_config.json`` and
        ``chat_template.jinja``) or a ``tokenizer.json`` file. Arguments given override the config's special
        tokens and chat template.

        The chat template is ``chat_template.jinja`` when the directory has one (as transformers reads it),
        else the config's ``chat_template``: a string, or a list of ``{"name", "template"}`` of which the one
        named "default" is taken (none: no template)."""
        path = os.path.expanduser(path)
        file = os.path.join(path, TOKENIZER_FILE) if os.path.isdir(path) else path
        if not os.path.exists(file):
            raise FileNotFoundError(f"{path}: expected a {TOKENIZER_FILE} (or a directory holding one)")
        config_file = os.path.join(os.path.dirname(file), TOKENIZER_CONFIG_FILE)
        config = {}
        if os.path.exists(config_file):
            with open(config_file) as f:
                config = json.load(f)
        eos = eos or _token_text(config.get("eos_token"))
        if eos is None:
            raise ValueError(f"{path}: no eos_token in {TOKENIZER_CONFIG_FILE}; pass eos=...")
        pad = pad or _token_text(config.get("pad_token"))
        bos = bos or _token_text(config.get("bos_token"))
        if chat_template is None:
            template_file = os.path.join(os.path.dirname(file), CHAT_TEMPLATE_FILE)
            if os.path.exists(template_file):
                with open(template_file) as f:
                    chat_template = f.read()
            else:
                chat_template = _config_chat_template(config.get("chat_template"), config_file)
        return cls(
            tokenizers.Tokenizer.from_file(file), eos=eos, pad=pad, bos=bos, answer_marker=answer_marker,
            chat_template=chat_template,
        )  # fmt: skip

    # -- text forms of the special tokens --------------------------------------------------------
    @property
    def pad(self) -> str:
        return self._forms[0]

    @property
    def bos(self) -> str | None:
        return self._forms[1]

    @property
    def eos(self) -> str:
        return self._forms[2]

    @property
    def answer_marker(self) -> str:
        return self._forms[3]

    @property
    def chat_template(self) -> str | None:
        """The chat template's Jinja source, or None."""
        return self._chat_template

    @property
    def vocab_size(self) -> int:
        """Ids are in ``[0, vocab_size)`` (added tokens included)."""
        return self._vocab_size

    @property
    def backend(self) -> tokenizers.Tokenizer:
        """The wrapped ``tokenizers.Tokenizer`` (a private copy; do not change it)."""
        return self._tok

    def id_of(self, token: str) -> int:
        """Id of one token of the vocabulary, given as its text (e.g. a special form)."""
        tid = self._tok.token_to_id(token)
        if tid is None:
            raise ValueError(f"{token!r} is not one token of the vocabulary")
        return tid

    def ids_of(self, tokens: Iterable[str]) -> np.ndarray:
        """int32 ids of several tokens, e.g. to build a legal-action mask."""
        return np.asarray([self.id_of(t) for t in tokens], np.int32)

    # -- encode / decode --------------------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        """Token ids of `text` (no BOS/EOS added); special forms in the text become one token each."""
        if not isinstance(text, str):
            raise ValueError(f"expected text (str), got {type(text).__name__}")
        return list(self._tok.encode(text, add_special_tokens=False).ids)

    def encode_padded(self, text: str, length: int, *, bos: bool = False) -> np.ndarray:
        """``[length]`` int32 array: (bos +) encode(text), right-padded with ``pad_id``."""
        if bos and self.bos_id is None:
            raise ValueError("this tokenizer has no bos token (bos=None); call encode_padded(..., bos=False)")
        ids = ([self.bos_id] if bos else []) + self.encode(text)
        if len(ids) > length:
            raise ValueError(f"text encodes to {len(ids)} tokens, more than the {length} allowed: {text!r}")
        out = np.full((length,), self.pad_id, np.int32)
        out[: len(ids)] = ids
        return out

    def decode(self, ids: Iterable[int]) -> str:
        """Text of token ids, special tokens as their text forms."""
        flat = np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids).reshape(-1)
        bad = flat[(flat < 0) | (flat >= self._vocab_size)]
        if bad.size:
            raise ValueError(f"token id {int(bad[0])} is outside the vocabulary [0, {self._vocab_size})")
        return self._tok.decode([int(t) for t in flat], skip_special_tokens=False)

    # -- chat template -----------------------------------------------------------------------------
    def apply_chat_template(self, messages: Sequence[dict], *, add_generation_prompt: bool = True) -> str:
        """`messages` (dicts with ``"role"`` and ``"content"``, e.g. ``{"role": "user", "content": ...}``)
        rendered with the chat template, as transformers' ``apply_chat_template(..., tokenize=False)`` does:
        the template sees ``messages``, ``add_generation_prompt`` (open an assistant turn at the end),
        ``bos_token``, ``eos_token`` and ``pad_token``. Returns text; :meth:`encode` reads its special forms
        back as one token each.

        Raises:
          ValueError: the tokenizer has no chat template, a message is not a ``{"role", "content"}`` dict, or
            the template refuses the conversation (its ``raise_exception(message)``).
        """
        if self._compiled is None:
            raise ValueError(
                "this tokenizer has no chat template: expected chat_template=... (Jinja source), or a directory "
                f"whose {TOKENIZER_CONFIG_FILE} has a 'chat_template' (a string, or a list with one named "
                f"'default') or that holds a {CHAT_TEMPLATE_FILE}"
            )
        messages = list(messages)
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or not isinstance(m.get("role"), str) or "content" not in m:
                raise ValueError(f"message {i}: expected a dict with 'role' (str) and 'content', got {m!r:.200}")
        special = {"bos_token": self.bos, "eos_token": self.eos, "pad_token": self.pad}
        special = {k: v for k, v in special.items() if v is not None}  # no BOS (Qwen): bos_token is undefined
        try:
            return self._compiled.render(
                messages=messages, add_generation_prompt=bool(add_generation_prompt), tools=None, documents=None,
                **special,
            )  # fmt: skip
        except jinja2.exceptions.TemplateError as e:
            raise ValueError(f"the chat template refused the messages: {e.message or e}") from None

    # -- value semantics (hashable: envs close over tokenizers inside jit) ------------------------
    def _key(self) -> tuple:
        return (self._json, self._forms, self._chat_template)

    def __eq__(self, other):
        return isinstance(other, BPETokenizer) and self._key() == other._key()

    def __hash__(self):
        return self._hash

    def __repr__(self):
        chat = ", chat_template=..." if self._chat_template is not None else ""
        return (
            f"BPETokenizer(vocab_size={self.vocab_size}, eos={self.eos!r}, answer_marker={self.answer_marker!r}{chat})"
        )
