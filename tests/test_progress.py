from tasks.progress import Progress


def test_without_a_terminal_progress_logs_a_few_lines_not_a_flood():
    lines: list[str] = []
    progress = Progress(1_000, "training rnn", lines.append, terminal=False)
    for epoch in range(1_000):
        progress.advance(f"perplexity {1000 - epoch}")
    progress.close()
    assert 1 <= len(lines) <= 11
    assert lines[-1] == "training rnn: 1000/1000 (perplexity 1)"


def test_in_a_terminal_it_draws_a_bar_and_logs_nothing():
    lines: list[str] = []
    progress = Progress(5, "writing batch shards", lines.append, terminal=True)
    for _ in range(5):
        progress.advance()
    progress.close()
    assert lines == [] and progress.done == 5
