"""The multi-process launcher ends each rank with os._exit(0): a failing rank must still fail the test."""

import pytest

from spawn_ranks import spawn_ranks


def _fails_on_rank_1(rank: int) -> None:
    assert rank == 0, "rank 1 fails"


def _writes(rank: int, out: str) -> None:
    with open(f"{out}/rank{rank}", "w", encoding="utf-8") as f:
        f.write("done")


def test_a_failing_rank_fails_the_launch():
    with pytest.raises(Exception, match="rank 1 fails"):
        spawn_ranks(_fails_on_rank_1, 2)


def test_every_rank_runs_to_the_end(tmp_path):
    spawn_ranks(_writes, 2, str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rank0", "rank1"]
