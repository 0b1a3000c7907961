"""Character-level tokenizer with special tokens.

Token ids: ``0 = pad, 1 = bos, 2 = eos, 3 = answer marker``, then one id per alphabet character in
alphabet order (so the digits ``'0'..'9'`` have consecutive ids: ``value = id - id_of('0')``).
Special tokens have a text form (``tok.eos == "<eos>"``, ``tok.answer_marker == "<ans>"``) that
``encode`` reads back as one token, so a response can be written as plain text::

    text = "3+4=7" + tok.answer_marker + "7"
    tok.decode(tok.encode(text)) == text

The first character of every special form is kept out of the alphabet, so decoding ordinary tokens
can never produce a special form by accident.
"""

from __future__ import annotations

import string
from collections.abc import Iterable, Sequence

import numpy as np

#: Lower-case letters, digits, arithmetic and a little punctuation: every built-in task fits.
DEFAULT_ALPHABET = "0123456789+-*/()=,.:;?|_ " + string.ascii_lowercase

PAD, BOS, EOS, ANSWER = 0, 1, 2, 3
DEFAULT_SPECIAL_FORMS = ("<pad>", "<bos>", "<eos>", "<ans>")


class Tokenizer:
    """Maps text to int32 token ids and back. Immutable and hashable (safe to close over in jit)."""

    def __init__(
        self,
        alphabet: str = DEFAULT_ALPHABET,
        special_forms: Sequence[str] = DEFAULT_SPECIAL_FORMS,
    ):
        if len(set(alphabet)) != len(alphabet):
            dup = sorted({c for c in alphabet if alphabet.count(c) > 1})
            raise ValueError(f"alphabet has repeated characters: {dup!r}")
        if len(special_forms) != 4:
            raise ValueError(f"need 4 special forms (pad, bos, eos, answer), got {special_forms!r}")
        for form in special_forms:
            if not form or form[0] in alphabet:
                raise ValueError(
                    f"special form {form!r} must be non-empty and start with a character outside "
                    "the alphabet, so that decoded text is never ambiguous"
                )
        self._alphabet = alphabet
        self._special = tuple(special_forms)
        self._char_to_id = {c: i + len(special_forms) for i, c in enumerate(alphabet)}

    # -- text forms and ids of the special tokens -------------------------------------------------
    pad_id, bos_id, eos_id, answer_id = PAD, BOS, EOS, ANSWER

    @property
    def pad(self) -> str:
        return self._special[PAD]

    @property
    def bos(self) -> str:
        return self._special[BOS]

    @property
    def eos(self) -> str:
        return self._special[EOS]

    @property
    def answer_marker(self) -> str:
        return self._special[ANSWER]

    @property
    def alphabet(self) -> str:
        return self._alphabet

    @property
    def vocab_size(self) -> int:
        return len(self._special) + len(self._alphabet)

    def id_of(self, char: str) -> int:
        """Token id of one alphabet character (or of a special form)."""
        if char in self._special:
            return self._special.index(char)
        try:
            return self._char_to_id[char]
        except KeyError:
            raise ValueError(self._unknown(char, char, 0)) from None

    def ids_of(self, chars: Iterable[str]) -> np.ndarray:
        """int32 ids of several characters, e.g. to build a legal-action mask."""
        return np.asarray([self.id_of(c) for c in chars], np.int32)

    # -- encode / decode --------------------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        """Token ids of `text`; special forms become one token each.

        Raises:
          ValueError: naming the first character that is neither in the alphabet nor the start of
            a special form.
        """
        ids, i = [], 0
        while i < len(text):
            for sid, form in enumerate(self._special):
                if text.startswith(form, i):
                    ids.append(sid)
                    i += len(form)
                    break
            else:
                c = text[i]
                if c not in self._char_to_id:
                    raise ValueError(self._unknown(c, text, i))
                ids.append(self._char_to_id[c])
                i += 1
        return ids

    def encode_padded(self, text: str, length: int, *, bos: bool = False) -> np.ndarray:
        """``[length]`` int32 array: (bos +) encode(text), right-padded with pad_id."""
        ids = ([BOS] if bos else []) + self.encode(text)
        if len(ids) > length:
            raise ValueError(f"text encodes to {len(ids)} tokens, more than the {length} allowed: {text!r}")
        out = np.full((length,), PAD, np.int32)
        out[: len(ids)] = ids
        return out

    def decode(self, ids: Iterable[int]) -> str:
        """Text of token ids (special tokens as their text forms)."""
        n_special = len(self._special)
        out = []
        for t in np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids).reshape(-1):
            t = int(t)
            if 0 <= t < n_special:
                out.append(self._special[t])
            elif n_special <= t < self.vocab_size:
                out.append(self._alphabet[t - n_special])
            else:
                raise ValueError(f"token id {t} is outside the vocabulary [0, {self.vocab_size})")
        return "".join(out)

    def _unknown(self, char: str, text: str, pos: int) -> str:
        return (
            f"cannot encode character {char!r} at position {pos} of {text!r}: it is not in the "
            f"tokenizer's alphabet {self._alphabet!r} and starts no special form {self._special!r}"
        )

    # -- value semantics (hashable: envs close over tokenizers inside jit) ------------------------
    def __eq__(self, other):
        return isinstance(other, Tokenizer) and (self._alphabet, self._special) == (
            other._alphabet,
            other._special,
        )

    def __hash__(self):
        return hash((self._alphabet, self._special))

    def __repr__(self):
        return f"Tokenizer(vocab_size={self.vocab_size}, alphabet={self._alphabet!r})"


DEFAULT_TOKENIZER = Tokenizer()
