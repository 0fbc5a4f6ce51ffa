"""Avro archives without a broker: what export writes is readable by fastavro and by Apache's own
library, holds exactly what the worker would fold, keeps every refused record, and folds to the same
snapshots as the records it came from."""

from __future__ import annotations

import base64
import datetime as dt
import json
from pathlib import Path

import avro.datafile
import avro.io
import fastavro
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processors.archive import (
    SKIPPED,
    Archived,
    ArchiveProblems,
    ArchiveWriter,
    archive_files,
    in_log_order,
    read_archive,
    run_replay_files,
)
from processors.exceptions import ArchiveError
from processors.intake import vendor_of
from processors.replay import ReplayStates
from schemas.codec import FastavroCodec
from schemas.events import (
    ORDER_EVENTS,
    Event,
    InventoryAdjusted,
    OrderCancelled,
    OrderPlaced,
    ProductUpserted,
)
from schemas.settings import KafkaSettings
from schemas.topics import Topics
from tests.unit.test_codec import events as any_event
from tests.unit.test_replay import (
    INVENTORY,
    NOW,
    ORDERS,
    Rec,
    aging_stamps,
    as_records,
    replayed,
    right_topic,
    simulated,
)

codec = FastavroCodec()
TOPICS = Topics(ORDERS, INVENTORY, "vendor-metrics", "vendor-activity", "orders.dlq", "inventory.dlq")
TYPES = (OrderPlaced, OrderCancelled, ProductUpserted, InventoryAdjusted)


def export(records: list[Rec], directory: Path, **meta: str) -> ArchiveWriter:
    with ArchiveWriter(directory, TYPES, TOPICS, meta) as archive:
        for r in records:
            archive.add(r)
        archive.commit()
    return archive


def accepted(records: list[Rec]) -> dict[type[Event], list[Event]]:
    """What the archive must hold: decodable events on their topic, keyed by their vendor, per type."""
    out: dict[type[Event], list[Event]] = {t: [] for t in TYPES}
    for r in records:
        try:
            event = codec.decode(r.value or b"", validate=False)
        except Exception:
            continue
        if r.key == event.vendor_id.encode() and r.topic == right_topic(event):
            out[type(event)].append(event)
    return out


def test_one_file_per_type_readable_by_fastavro_and_apache_avro(tmp_path: Path) -> None:
    records = as_records(simulated(800))
    archive = export(records, tmp_path, **{"vendorpulse.complete": "true"})
    expected = accepted(records)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["OrderPlaced.avro", "OrderCancelled.avro", "ProductUpserted.avro", "InventoryAdjusted.avro", SKIPPED]
    )
    assert archive.written == {t: len(es) for t, es in expected.items()}
    for t in TYPES:
        path = tmp_path / f"{t.NAME}.avro"
        with path.open("rb") as fo:  # fastavro (what pandas uses): times come back as UTC datetimes
            reader = fastavro.reader(fo)
            assert reader.metadata["avro.codec"] == "deflate"
            assert reader.metadata["vendorpulse.topic"] == right_topic(expected[t][0])
            rows = list(reader)
        assert [r["event_id"] for r in rows] == [e.event_id for e in expected[t]]
        assert rows[0]["occurred_at"] == dt.datetime.fromtimestamp(expected[t][0].occurred_at / 1000, dt.UTC)
        with path.open("rb") as fo:  # the reference implementation reads it too
            apache = list(avro.datafile.DataFileReader(fo, avro.io.DatumReader()))
        assert [r["event_id"] for r in apache] == [e.event_id for e in expected[t]]
        assert json.loads(reader.metadata["avro.schema"])["name"].endswith(t.NAME)


def test_read_archive_gives_back_the_events_in_file_order(tmp_path: Path) -> None:
    records = as_records(simulated(500))
    export(records, tmp_path)
    problems = ArchiveProblems()
    got = list(read_archive([tmp_path], problems))
    files = sorted(TYPES, key=lambda t: t.NAME)  # a directory is read file by file, by name
    assert [a.event for a in got] == [e for t in files for e in accepted(records)[t]]
    assert not problems.skipped


def test_records_keep_their_timestamp_and_place_and_come_back_in_log_order(tmp_path: Path) -> None:
    sent = simulated(600)
    records = as_records(sent, aging_stamps(sent))
    export(records, tmp_path)
    got = in_log_order(read_archive([tmp_path], ArchiveProblems()))
    kept = {(r.topic, r.partition, r.offset): r for r in records}
    for a in got:
        r = kept[(right_topic(a.event), a.partition, a.offset)]
        assert (a.ts, codec.decode(r.value or b"", validate=False)) == (r.timestamp, a.event)
    orders = [(a.partition, a.offset) for a in got if isinstance(a.event, ORDER_EVENTS)]
    assert orders == sorted(orders)  # placements and cancellations interleaved as in their partitions
    assert len(got) == sum(map(len, accepted(records).values()))
    with (tmp_path / "OrderPlaced.avro").open("rb") as fo:  # analysts see them as columns
        row = next(iter(fastavro.reader(fo)))
    assert {"kafka_timestamp", "kafka_partition", "kafka_offset"} <= row.keys()


def test_refused_records_are_skipped_counted_and_kept_with_their_bytes(tmp_path: Path) -> None:
    records = as_records(simulated(400))
    archive = export(records, tmp_path)
    assert dict(archive.skipped) == {
        "bad_key": 2, "bad_marker": 1, "truncated_body": 1, "wrong_topic": 1, "no_value": 1, "key_mismatch": 1,
    }  # fmt: skip
    lines = [orjson.loads(line) for line in (tmp_path / SKIPPED).read_bytes().splitlines()]
    assert len(lines) == sum(archive.skipped.values())
    by_place = {(r.topic, r.partition, r.offset): r for r in records}
    for line in lines:
        original = by_place[(line["topic"], line["partition"], line["offset"])]
        assert (line["value"] and base64.b64decode(line["value"])) == (original.value or None)
        assert line["code"] in archive.skipped


def test_the_archive_folds_to_the_snapshots_of_its_records(tmp_path: Path) -> None:
    records = as_records(simulated(1200))
    export(records, tmp_path)
    from_files = ReplayStates(codec)
    from_files.take_events((a.event, a.ts) for a in in_log_order(read_archive([tmp_path], ArchiveProblems())))
    from_records = replayed(records)
    for t in (NOW, NOW - 20 * 86_400_000):
        assert from_files.snapshots(t, 30) == from_records.snapshots(t, 30)


def test_with_a_short_horizon_the_archive_folds_as_its_records_do(tmp_path: Path) -> None:
    """The timestamps and the order of placements and cancellations matter with a horizon (contract
    §4.1): the archive keeps both."""
    sent = simulated(1500)
    sent += [s for s in sent[:300:7] if s[2] is not None]  # re-sent long after
    records = as_records(sent, aging_stamps(sent))
    export(records, tmp_path)
    from_files = ReplayStates(codec, lateness_days=2)
    from_files.take_events((a.event, a.ts) for a in in_log_order(read_archive([tmp_path], ArchiveProblems())))
    from_records = replayed(records, lateness_days=2)
    assert from_records.counts.refused["too_late"] > 0
    assert from_files.counts.refused["too_late"] == from_records.counts.refused["too_late"]
    for t in (NOW, NOW - 20 * 86_400_000):
        assert from_files.snapshots(t, 30) == from_records.snapshots(t, 30)


def test_replay_from_files_writes_json_lines(tmp_path: Path) -> None:
    records = as_records(simulated(400))
    export(records, tmp_path / "archive", **{"vendorpulse.complete": "false"})
    out = tmp_path / "snaps.jsonl"
    summary = run_replay_files(
        KafkaSettings(),
        [tmp_path / "archive"],
        vendors=["vendor-001"],
        as_of_ms=NOW,
        out_path=out,
    )
    (line,) = out.read_bytes().splitlines()
    assert orjson.loads(line) == replayed(records, {"vendor-001"}).snapshots(NOW, 30)[0]
    assert not summary.complete  # exported from --from on: says so
    assert any("--from" in w for w in summary.warnings)


def test_an_older_writer_schema_is_resolved_to_the_current_one(tmp_path: Path) -> None:
    current = codec.schemas.latest("vendorpulse.events.OrderCancelled").schema
    older = {**current, "fields": [f for f in current["fields"] if f["name"] != "reason"]}
    path = tmp_path / "OrderCancelled.avro"
    with path.open("wb") as fo:
        fastavro.writer(
            fo, older, [{"event_id": "e1", "occurred_at": NOW, "vendor_id": "v1", "order_id": "o1"}]
        )
    (got,) = read_archive([path], ArchiveProblems())
    assert got == Archived(OrderCancelled("e1", NOW, "v1", "o1", None), -1, -1, -1)  # no positions either


def test_unusable_files_are_reported_and_the_readable_part_kept(tmp_path: Path) -> None:
    export(as_records(simulated(3000)), tmp_path / "a")
    whole = (tmp_path / "a" / "OrderPlaced.avro").read_bytes()
    cut = tmp_path / "cut.avro"
    cut.write_bytes(whole[: len(whole) * 2 // 3])
    noise = tmp_path / "noise.avro"
    noise.write_bytes(b"not an avro file")
    foreign = tmp_path / "foreign.avro"
    with foreign.open("wb") as fo:
        fastavro.writer(
            fo, {"type": "record", "name": "Other", "fields": [{"name": "x", "type": "int"}]}, [{"x": 1}]
        )
    problems = ArchiveProblems()
    got = list(read_archive([cut, noise, foreign], problems))
    assert 0 < len(got) < len(list(read_archive([tmp_path / "a" / "OrderPlaced.avro"], ArchiveProblems())))
    assert dict(problems.skipped) == {"corrupt_file": 1, "unreadable_file": 1, "not_an_event_file": 1}
    assert len(problems.samples) == 3


def interrupted_export(directory: Path) -> None:
    with ArchiveWriter(directory, TYPES, TOPICS) as archive:
        archive.add(as_records(simulated(300))[0])
        raise RuntimeError("the broker went away")


def test_an_archive_is_not_overwritten_and_a_failed_one_leaves_nothing(tmp_path: Path) -> None:
    export(as_records(simulated(300)), tmp_path)
    with pytest.raises(ArchiveError, match="already exist"):
        ArchiveWriter(tmp_path, TYPES, TOPICS)
    fresh = tmp_path / "fresh"
    with pytest.raises(RuntimeError, match="went away"):
        interrupted_export(fresh)
    assert list(fresh.iterdir()) == []
    with pytest.raises(ArchiveError, match="does not exist"):
        archive_files([tmp_path / "missing.avro"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(any_event, min_size=1, max_size=20))
def test_any_event_round_trips_through_an_archive(
    tmp_path_factory: pytest.TempPathFactory, events: list[Event]
) -> None:
    """Values anywhere in their Avro ranges (longs, unicode, empty strings) come back unchanged."""
    directory = tmp_path_factory.mktemp("round-trip")
    records = as_records([(right_topic(e), e.vendor_id.encode(), codec.encode(e)) for e in events])
    records = [r for r in records if vendor_of(r.key) is not None]  # the worker's bad keys
    export(records, directory)
    got = list(read_archive([directory / f"{t.NAME}.avro" for t in TYPES], ArchiveProblems()))
    assert [a.event for a in got] == [e for t in TYPES for e in accepted(records)[t]]


def test_times_pandas_cannot_show_are_archived_and_counted(tmp_path: Path) -> None:
    ancient = OrderCancelled("e1", -62_135_596_800_001, "v1", "o1")  # a millisecond before year 1
    records = as_records([(ORDERS, b"v1", codec.encode(ancient))])
    assert export(records, tmp_path).odd_times == 1
    assert [a.event for a in read_archive([tmp_path / "OrderCancelled.avro"], ArchiveProblems())] == [ancient]
