"""The vocabulary artifact: its table read back, and the same bytes whatever Python's hash seed."""

import hashlib
import os
import subprocess
import sys

from artifacts.vocab import read_vocab, write_vocab
from tasks.vocab import VocabParams, build_vocab

SCRIPT = """
import sys
from pathlib import Path
from artifacts.vocab import write_vocab
from tasks.vocab import VocabParams, build_vocab
text = Path(sys.argv[1]).read_text(encoding="utf-8")
for order in ("codepoint", "frequency"):
    v = build_vocab(text, VocabParams(order=order))
    out = Path(sys.argv[2]) / order
    out.mkdir(parents=True)
    write_vocab(out, v, {"order": order})
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


def test_read_vocab_gives_back_what_was_written(tmp_path):
    vocab = build_vocab("aab☃", VocabParams(reserved=("<pad>",)))
    write_vocab(tmp_path, vocab, {})
    again = read_vocab(tmp_path)
    assert (again.tokens, again.counts.tolist(), again.reserved) == (["<pad>", "a", "b", "☃"], [0, 2, 1, 1], 1)
