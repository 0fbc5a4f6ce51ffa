"""The input-position guard: records are folded in offset order with none passed over, whatever the
consumer delivers (processors/positions.py)."""

from __future__ import annotations

from processors.worker.positions import InputPositions, Verdict

TP = ("orders", 0)


def verdicts(positions: InputPositions[tuple[str, int]], offsets: list[int], now: float = 0.0) -> list[str]:
    return [positions.check(TP, offset, now).value for offset in offsets]


def test_records_in_order_are_folded_and_records_read_again_are_old() -> None:
    positions: InputPositions[tuple[str, int]] = InputPositions()
    positions.reset({TP: 5})
    assert verdicts(positions, [3, 4, 5, 6, 6, 7]) == ["old", "old", "fold", "fold", "old", "fold"]
    assert positions.expected[TP] == 8


def test_a_gap_seeks_back_once_drops_what_follows_and_heals_with_the_re_read() -> None:
    positions: InputPositions[tuple[str, int]] = InputPositions()
    positions.reset({TP: 0})
    # 0..224 were dropped before the agent saw them (the failing two-worker run): seek back to 0
    assert verdicts(positions, [225, 226, 227]) == ["seek", "drop", "drop"]
    assert positions.seeking() == {TP: 0}
    # the re-read from 0 arrives: every record is folded once, in order
    assert verdicts(positions, list(range(0, 230))) == ["fold"] * 230
    assert positions.seeking() == {}
    assert positions.expected[TP] == 230


def test_a_real_gap_is_accepted_when_the_re_read_starts_above_the_expected_offset() -> None:
    positions: InputPositions[tuple[str, int]] = InputPositions()
    positions.reset({TP: 10})
    assert verdicts(positions, [12, 13]) == ["seek", "drop"]  # 10 and 11: transaction markers
    assert verdicts(positions, [12, 13, 14]) == ["accept", "fold", "fold"]  # the re-read starts at 12
    assert positions.expected[TP] == 15


def test_a_seek_that_brings_nothing_is_issued_again() -> None:
    positions: InputPositions[tuple[str, int]] = InputPositions(reseek_after_s=1.0)
    positions.reset({TP: 0})
    assert positions.check(TP, 50, now=0.0) is Verdict.SEEK
    assert positions.check(TP, 51, now=0.5) is Verdict.DROP
    assert positions.check(TP, 52, now=1.5) is Verdict.SEEK
    assert positions.check(TP, 53, now=1.6) is Verdict.DROP
    assert positions.check(TP, 0, now=1.7) is Verdict.FOLD


def test_a_reset_forgets_pending_gaps_and_partitions_are_independent() -> None:
    positions: InputPositions[tuple[str, int]] = InputPositions()
    other = ("inventory", 0)
    positions.reset({TP: 0, other: 7})
    assert positions.check(TP, 3, 0.0) is Verdict.SEEK
    assert positions.check(other, 7, 0.0) is Verdict.FOLD
    positions.reset({TP: 3, other: 8})
    assert positions.seeking() == {}
    assert positions.check(TP, 3, 0.0) is Verdict.FOLD
    # a partition the reset did not name is taken as it comes
    assert positions.check(("orders", 9), 40, 0.0) is Verdict.FOLD


def test_a_run_of_the_expected_offsets_is_folded_at_once_and_anything_else_checked_one_by_one() -> None:
    positions: InputPositions[str] = InputPositions()
    positions.reset({"a": 10})
    assert positions.run("a", 10, 14, 5)
    assert positions.expected["a"] == 15
    assert not positions.run("a", 15, 20, 5)  # one offset missing in between: not a plain run
    assert not positions.run("a", 16, 20, 5)  # starts past the expected offset: a gap
    assert not positions.run("b", 0, 4, 5)  # a partition the reset did not name
    assert positions.expected == {"a": 15}
