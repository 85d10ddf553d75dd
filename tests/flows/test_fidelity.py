"""The book's published perplexities, reproduced with its settings on the lyrics (slow: 250 epochs each, CPU),
through the same pipeline as `benchmarks.fidelity_seeds`."""

import pytest

from benchmarks.fidelity_seeds import perplexities

pytestmark = pytest.mark.slow
BOOK_SAMPLE = "不分开觉 你已经离开我 不知不觉 我跟了这节奏 后知后觉 又过了一个秋 后知后觉 我该好好生活 我该好好生"


@pytest.fixture
def root(tmp_path):
    """Each test's own store (its prepare takes a second), so that xdist runs the two tests at once."""
    return tmp_path / "fidelity"


def test_scratch_rnn_in_the_books_bands(root, lyrics_zip):
    random, _ = perplexities(root, lyrics_zip, "random", device="cpu")
    consecutive, samples = perplexities(root, lyrics_zip, "consecutive", device="cpu")
    assert len(random) == len(consecutive) == 250
    assert 1.20 <= random[-1] <= 1.45, random[-1]
    assert 1.10 <= consecutive[-1] <= 1.30, consecutive[-1]
    # Consecutive sampling converges faster, as in every published pair.
    assert consecutive[99] < random[99]
    assert consecutive[-1] < random[-1]
    # The book's own sample for 不分开, character for character.
    assert samples[1] == BOOK_SAMPLE


def test_torch_rnn_with_adam(root, lyrics_zip):
    perplexity, _ = perplexities(root, lyrics_zip, "consecutive", device="cpu", model="rnn", optimizer="adam", lr=1e-3)
    assert perplexity[-1] < 1.06, perplexity[-1]
