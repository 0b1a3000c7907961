"""BPE tokenizers behind the project's tokenizer interface: a byte-level BPE trained here with `tokenizers`."""

import json

import numpy as np
import pytest
import tokenizers
from tokenizers import decoders, models, pre_tokenizers, trainers

import jaxrl_reason as jr

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CORPUS = [f"{a}+{b}={a + b}. the sum of {a} and {b} is {a + b}" for a in range(40) for b in range(0, 40, 3)]


def train_bpe(vocab_size=400, specials=SPECIALS):
    """A Qwen-style byte-level BPE (no unknown token: every string encodes)."""
    tok = tokenizers.Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(CORPUS, trainer)
    return tok


def write_tokenizer(path, tok=None):
    """A Hugging Face tokenizer directory: tokenizer.json + tokenizer_config.json (Qwen's special tokens)."""
    (tok or train_bpe()).save(str(path / "tokenizer.json"))
    config = {"eos_token": "<|im_end|>", "pad_token": {"content": "<|endoftext|>"}, "bos_token": None}
    (path / "tokenizer_config.json").write_text(json.dumps(config))


def test_round_trip_special_forms_and_merges(tmp_path):
    write_tokenizer(tmp_path)
    tok = jr.BPETokenizer.from_pretrained(str(tmp_path))
    base = train_bpe()
    # the answer marker was not in the vocabulary: added as one special token with the next id
    assert tok.answer_marker == "<answer>" and tok.answer_id == base.get_vocab_size() == tok.vocab_size - 1
    assert (tok.eos_id, tok.pad_id, tok.bos_id) == (
        base.token_to_id("<|im_end|>"),
        base.token_to_id("<|endoftext|>"),
        None,
    )
    text = "12+7=19. the sum of 12 and 7 is 19" + tok.answer_marker + "19" + tok.eos
    ids = tok.encode(text)
    assert ids.count(tok.answer_id) == 1 and ids.count(tok.eos_id) == 1 and ids[-1] == tok.eos_id
    assert ids[ids.index(tok.answer_id) + 1 : -1] == tok.encode("19")
    assert len(ids) < len(text) // 2  # merges learnt from the corpus: far fewer tokens than characters
    assert tok.decode(ids) == text
    for odd in ("Ünïcödé ✓ 数学", "  two  spaces\nand a newline\t", ""):  # byte-level: any text round-trips
        assert tok.decode(tok.encode(odd)) == odd
    assert tok.decode(np.asarray(ids, np.int32)) == text
    padded = tok.encode_padded("3+4=7", 12)
    assert padded.dtype == np.int32 and padded.shape == (12,)
    n = len(tok.encode("3+4=7"))
    assert padded[:n].tolist() == tok.encode("3+4=7") and set(padded[n:].tolist()) == {tok.pad_id}
    assert tok.ids_of(["<|im_end|>", "<answer>"]).tolist() == [tok.eos_id, tok.answer_id]


def test_a_marker_already_in_the_vocabulary_keeps_its_id_and_the_config_can_be_overridden(tmp_path):
    write_tokenizer(tmp_path, train_bpe(specials=[*SPECIALS, "<ans>"]))
    tok = jr.BPETokenizer.from_pretrained(str(tmp_path), answer_marker="<ans>", eos="<|endoftext|>", bos="<|im_start|>")
    base = tokenizers.Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    assert tok.vocab_size == base.get_vocab_size()
    assert (tok.answer_id, tok.eos_id, tok.bos_id) == tuple(
        base.token_to_id(t) for t in ("<ans>", "<|endoftext|>", "<|im_start|>")
    )
    assert tok.encode_padded("1", 4, bos=True)[0] == tok.bos_id


def test_value_semantics_and_clear_errors(tmp_path):
    write_tokenizer(tmp_path)
    a = jr.BPETokenizer.from_pretrained(str(tmp_path))
    b = jr.BPETokenizer.from_pretrained(str(tmp_path / "tokenizer.json"))
    assert a == b and hash(a) == hash(b)
    c = jr.BPETokenizer.from_pretrained(str(tmp_path), answer_marker="<final>")
    assert a != c
    with pytest.raises(ValueError, match="token id 9999 is outside the vocabulary"):
        a.decode([1, 9999])
    with pytest.raises(ValueError, match="no bos token"):
        a.encode_padded("1", 4, bos=True)
    with pytest.raises(ValueError, match="eos token '<missing>' is not one token"):
        jr.BPETokenizer.from_pretrained(str(tmp_path), eos="<missing>")
    with pytest.raises(ValueError, match="more than the 2 allowed"):
        a.encode_padded("the sum of 1 and 2", 2)
    with pytest.raises(FileNotFoundError, match="tokenizer.json"):
        jr.BPETokenizer.from_pretrained(str(tmp_path / "nowhere"))
