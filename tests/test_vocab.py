import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest
from pydantic import ValidationError

from tasks.encode import EncodeError, decode, encode
from tasks.vocab import BOOK_VOCAB_SIZE, UNK, VocabParams, build_vocab


def test_book_vocabulary_by_code_point(book_text):
    vocab = build_vocab(book_text, VocabParams())
    assert len(vocab) == BOOK_VOCAB_SIZE == 1_027
    assert vocab.tokens == sorted(set(book_text))
    assert int(vocab.counts.sum()) == 10_000
    assert vocab.counts[vocab.tokens.index(" ")] == book_text.count(" ")


def test_frequency_order_breaks_ties_by_code_point():
    vocab = build_vocab("bbaaccd", VocabParams(order="frequency"))
    assert vocab.tokens == ["a", "b", "c", "d"]
    assert vocab.counts.tolist() == [2, 2, 2, 1]
    vocab = build_vocab("zyyx", VocabParams(order="frequency"))
    assert vocab.tokens == ["y", "x", "z"]


def test_reserved_tokens_and_min_count():
    vocab = build_vocab("aaabbc", VocabParams(reserved=("<pad>", UNK), min_count=2))
    assert vocab.tokens == ["<pad>", UNK, "a", "b"]
    assert vocab.counts.tolist() == [0, 1, 3, 2]
    assert vocab.unk == 1
    indices = encode("abcx", vocab)
    assert indices.tolist() == [2, 3, 1, 1]
    assert decode(indices, vocab) == f"ab{UNK}{UNK}"


def test_round_trip_on_the_lyrics(book_text):
    vocab = build_vocab(book_text, VocabParams())
    indices = encode(book_text, vocab)
    assert indices.dtype == np.int32 and len(indices) == 10_000
    assert decode(indices, vocab) == book_text
    assert [vocab.tokens[i] for i in indices[:20]] == list(book_text[:20])


def test_unknown_character_without_unk_is_an_error():
    vocab = build_vocab("ab", VocabParams())
    with pytest.raises(EncodeError, match=r"'\\U0001f600' at 2|'😀' at 2"):
        encode("ab😀", vocab)


@pytest.mark.parametrize(
    "bad,message",
    [
        ({"min_count": 2}, "add --reserved '<unk>'"),
        ({"min_count": 0}, "min_count"),
        ({"reserved": ("x",)}, "single character"),
        ({"reserved": ("<a>", "<a>")}, "distinct"),
        ({"order": "random"}, "order"),
        ({"sort": "codepoint"}, "sort"),
    ],
)
def test_bad_params_are_refused(bad, message):
    with pytest.raises(ValidationError, match=message):
        VocabParams(**bad)


SCRIPT = """
import sys
from pathlib import Path
from artifacts import schemas
from tasks.vocab import VocabParams, build_vocab
text = Path(sys.argv[1]).read_text(encoding="utf-8")
for order in ("codepoint", "frequency"):
    v = build_vocab(text, VocabParams(order=order))
    out = Path(sys.argv[2]) / order
    out.mkdir(parents=True)
    schemas.write_vocab(out, v.tokens, v.counts, v.reserved, {"order": order})
"""


def test_vocabulary_bytes_do_not_depend_on_the_hash_seed(book_text, tmp_path):
    source = tmp_path / "text.txt"
    source.write_text(book_text, encoding="utf-8")
    digests = []
    for seed in ("0", "1", "12345"):
        out = tmp_path / f"seed{seed}"
        env = {**os.environ, "PYTHONHASHSEED": seed}
        subprocess.run([sys.executable, "-c", SCRIPT, str(source), str(out)], env=env, check=True)
        digests.append(
            [hashlib.sha256((out / o / "vocab.parquet").read_bytes()).hexdigest() for o in ("codepoint", "frequency")]
        )
    assert digests[0] == digests[1] == digests[2]


def test_code_points_beyond_the_basic_plane():
    from tasks.vocab import code_points

    assert code_points("a好").dtype == np.uint16
    wide = code_points("a\U0001f600好")
    assert wide.dtype == np.uint32 and wide.tolist() == [0x61, 0x1F600, 0x597D]
    vocab = build_vocab(["a\U0001f600", "好a"], VocabParams())
    assert vocab.tokens == ["a", "好", "\U0001f600"] and vocab.counts.tolist() == [2, 1, 1]
    assert decode(encode("好\U0001f600a", vocab), vocab) == "好\U0001f600a"


def test_encoding_in_chunks_matches_and_reports_global_offsets():
    from tasks.encode import encode_chunks

    vocab = build_vocab("abc好", VocabParams())
    chunks = ["ab", "c好a", "b"]
    assert np.concatenate(list(encode_chunks(chunks, vocab))).tolist() == encode("abc好ab", vocab).tolist()
    with pytest.raises(EncodeError, match="'z' at 5"):
        list(encode_chunks(["abc", "aaz"], vocab))
