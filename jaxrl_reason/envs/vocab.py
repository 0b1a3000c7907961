"""Legal actions over a pretrained model's vocabulary.

A task over a character alphabet lets the policy write only the task's characters. Over a BPE vocabulary
(:class:`~jaxrl_reason.envs.bpe.BPETokenizer`) the same rule is: a token is legal when its decoded text is
non-empty and uses only the task's characters; EOS and the answer marker are legal too; every other special
token (``<|im_start|>``, ...) and every id past the tokenizer's vocabulary (Qwen pads its embedding table:
151,936 rows for 151,665 tokens) is illegal.
"""

from __future__ import annotations

import numpy as np


def check_num_actions(tokenizer, num_actions: int | None) -> int:
    """The action count of an env over `tokenizer`: `num_actions` (the model's vocabulary, at least the
    tokenizer's), or the tokenizer's size when None. Raises ValueError for a smaller one."""
    if num_actions is None:
        return int(tokenizer.vocab_size)
    if int(num_actions) < tokenizer.vocab_size:
        raise ValueError(
            f"num_actions={num_actions} is smaller than the tokenizer's vocabulary ({tokenizer.vocab_size} ids, "
            "answer marker included): the model's embedding table must hold every token id"
        )
    return int(num_actions)


def token_texts(tokenizer) -> list[str]:
    """The decoded text of every id in ``[0, tokenizer.vocab_size)``, one id at a time."""
    ids = [[i] for i in range(tokenizer.vocab_size)]
    return tokenizer.backend.decode_batch(ids, skip_special_tokens=False)


def vocab_legal_mask(tokenizer, allowed: str, num_actions: int) -> np.ndarray:
    """``[num_actions]`` bool: the tokens whose text uses only the characters of `allowed`, plus EOS and the
    answer marker (see the module docstring).

    Raises:
      ValueError: a character of `allowed` that no sequence of legal tokens can write (the tokenizer splits
        it into pieces that are not text on their own, or maps it to an unknown token).
    """
    texts = token_texts(tokenizer)
    chars = set(allowed)
    mask = np.zeros((num_actions,), bool)
    mask[: len(texts)] = [bool(t) and set(t) <= chars for t in texts]
    special = list(tokenizer.backend.get_added_tokens_decoder())
    mask[special] = False
    mask[[tokenizer.eos_id, tokenizer.answer_id]] = True
    for c in allowed:
        ids = tokenizer.encode(c)
        if not ids or not mask[ids].all() or tokenizer.decode(ids) != c:
            raise ValueError(
                f"the tokenizer cannot write the task's character {c!r} with tokens of the task's alphabet "
                f"{allowed!r} (it encodes to {[texts[i] for i in ids]!r})"
            )
    return mask
