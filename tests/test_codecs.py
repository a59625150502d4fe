"""Decoding values per format.value: Avro (schemaless and Confluent wire format) next to JSON."""

from __future__ import annotations

import base64
import json
import logging
import threading
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
import pytest
from confluent_kafka.schema_registry import Schema

from distilld.codecs import make_decoder, reason_label
from distilld.codecs.avro_codec import AvroDecoder, ConfluentAvroDecoder
from distilld.codecs.avro_schema import load_schema
from distilld.codecs.registry import RegistryUnavailable, SchemaRegistry
from distilld.fieldpath import compile_path
from distilld.settings import ConfigError, FormatSettings, load_settings

from .avro_tools import PERSON_SCHEMA, PERSON_SCHEMA_FILE, avro_person, confluent, registry_server, schemaless
from .conftest import people_records
from .kafka_tools import (
    DaemonProcess,
    create_topics,
    daemon_config,
    end_offsets,
    produce,
    read_all,
    unique,
    wait_committed,
)

PEOPLE = [avro_person(r) for r in people_records(20, seed=5)]
PASSWORD = "s3cret-Pa55word-never-printed"


def test_schemaless_avro_decodes_records_and_reports_bad_values() -> None:
    decode = AvroDecoder(load_schema(PERSON_SCHEMA_FILE))
    good = [schemaless(PERSON_SCHEMA, r) for r in PEOPLE[:3]]
    values = [good[0], b"", good[1] + b"\x00", good[2][:-3], None, b'{"id": 1}', good[2]]
    records, idx, bad = decode(values)
    assert idx == [0, 6] and records == [PEOPLE[0], PEOPLE[2]]
    reasons = dict(bad)
    assert reasons[1].startswith("empty value") and reasons[4] == "empty value (tombstone)"
    assert reasons[2] == "not Avro: 1 bytes left after the record"
    assert reasons[3].startswith("not Avro:") and reasons[5].startswith("not Avro:")
    assert {reason_label(r) for r in reasons.values()} == {"empty", "not_avro"}


def _mock_registry(*schemas: dict[str, Any]) -> tuple[SchemaRegistry, list[int]]:
    registry = SchemaRegistry({"url": "mock://codecs"}, wait=lambda s: False)
    ids = [
        registry.client.register_schema(f"s{i}-value", Schema(orjson.dumps(s).decode(), "AVRO"))
        for i, s in enumerate(schemas)
    ]
    return registry, ids


def test_confluent_wire_format_resolves_writer_schemas_by_id() -> None:
    newer = {**PERSON_SCHEMA, "fields": [*PERSON_SCHEMA["fields"], {"name": "extra", "type": "int", "default": 0}]}
    registry, (old_id, new_id) = _mock_registry(PERSON_SCHEMA, newer)
    decode = ConfluentAvroDecoder(registry, reader=load_schema(PERSON_SCHEMA_FILE))
    values = [
        confluent(old_id, PERSON_SCHEMA, PEOPLE[0]),
        confluent(new_id, newer, {**PEOPLE[1], "extra": 7}),  # resolved to the reader schema: extra dropped
        b"\x01" + confluent(old_id, PERSON_SCHEMA, PEOPLE[2])[1:],
        b"\x00\x00",
        confluent(999, PERSON_SCHEMA, PEOPLE[3]),
        confluent(old_id, PERSON_SCHEMA, PEOPLE[4])[:-2],
    ]
    records, idx, bad = decode(values)
    assert idx == [0, 1] and records == [PEOPLE[0], PEOPLE[1]]
    labels = {i: reason_label(r) for i, r in bad}
    assert labels == {2: "bad_framing", 3: "bad_framing", 4: "unknown_schema", 5: "not_avro"}
    assert dict(bad)[4].startswith("unknown schema id 999")


def test_an_unreachable_registry_is_retried_not_blamed_on_the_record() -> None:
    waits: list[float] = []
    errors: list[int] = []
    registry = SchemaRegistry(
        {"url": "http://127.0.0.1:1"},  # nothing listens there
        wait=lambda s: waits.append(s) or len(waits) < 4,
        on_error=lambda: errors.append(1),
    )
    decode = ConfluentAvroDecoder(registry)
    with pytest.raises(RegistryUnavailable):
        decode([confluent(1, PERSON_SCHEMA, PEOPLE[0])])
    assert waits == [0.5, 1.0, 2.0, 4.0], "exponential backoff until the daemon stops"
    assert len(errors) == 4


def test_an_http_registry_serves_schemas_and_404s_unknown_ids() -> None:
    with registry_server({7: PERSON_SCHEMA}) as url:
        decode = ConfluentAvroDecoder(SchemaRegistry({"url": url}, wait=lambda s: False))
        records, idx, bad = decode([confluent(7, PERSON_SCHEMA, PEOPLE[0]), confluent(8, PERSON_SCHEMA, PEOPLE[1])])
    assert records == [PEOPLE[0]] and idx == [0]
    assert reason_label(bad[0][1]) == "unknown_schema"


class _IngressHandler(BaseHTTPRequestHandler):
    """An ingress in front of a registry: a bare HTML 404 while no registry pod is ready."""

    ready = False
    authorizations: list[str | None] = []

    def do_GET(self) -> None:
        type(self).authorizations.append(self.headers.get("Authorization"))
        if type(self).ready:
            status, body = 200, json.dumps({"schema": json.dumps(PERSON_SCHEMA)}).encode()
        else:
            status, body = 404, b"<html><body><h1>404 Not Found</h1>default backend</body></html>"
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_a_404_that_is_not_the_registrys_answer_is_retried_not_blamed_on_the_record() -> None:
    handler = type("Handler", (_IngressHandler,), {"ready": False})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    def wait(seconds: float) -> bool:
        handler.ready = True  # the registry's pod comes up
        return True

    try:
        registry = SchemaRegistry({"url": f"http://127.0.0.1:{server.server_address[1]}"}, wait=wait)
        records, _, bad = ConfluentAvroDecoder(registry)([confluent(7, PERSON_SCHEMA, PEOPLE[0])])
    finally:
        server.shutdown()
        server.server_close()
    assert bad == [] and records == [PEOPLE[0]]


def test_the_password_of_a_registry_url_is_sent_as_basic_auth_never_logged(caplog: pytest.LogCaptureFixture) -> None:
    """The registry client takes https://user:password@host as basic auth; httpx logs each
    request's URL at INFO, so the password must not stay in the URL."""
    handler = type("Handler", (_IngressHandler,), {"ready": True, "authorizations": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://distilld:{PASSWORD}@127.0.0.1:{server.server_address[1]}"
    try:
        with caplog.at_level(logging.DEBUG):
            decode = make_decoder(FormatSettings(value="avro_confluent", schema_registry={"url": url}))
            records, _, _ = decode([confluent(7, PERSON_SCHEMA, PEOPLE[0])])
    finally:
        server.shutdown()
        server.server_close()
    assert records == [PEOPLE[0]]
    assert handler.authorizations == ["Basic " + base64.b64encode(f"distilld:{PASSWORD}".encode()).decode()]
    assert "HTTP Request" in caplog.text and PASSWORD not in caplog.text


@pytest.mark.parametrize("path", ["money.income", "tags.0", "gender", "nope.deeper"])
def test_field_paths_read_avro_records_as_json_ones(path: str) -> None:
    avro_records, _, _ = AvroDecoder(load_schema(PERSON_SCHEMA_FILE))([schemaless(PERSON_SCHEMA, r) for r in PEOPLE])
    json_records, _, _ = make_decoder(FormatSettings())([orjson.dumps(r) for r in PEOPLE])
    get = compile_path(path)
    assert get(avro_records) == get(json_records)


def test_an_avro_timestamp_field_gives_the_event_time_whatever_the_unit() -> None:
    """Avro's timestamp-millis and -micros decode to datetimes: as a reducer.time field they read
    as no time at all, and every record took the watermark."""
    from distilld.codecs.avro_schema import parse_record_schema
    from distilld.daemon.fields import RecordFields
    from distilld.settings import ReducerSettings

    schema = {
        "type": "record",
        "name": "Event",
        "fields": [
            {"name": "ms", "type": {"type": "long", "logicalType": "timestamp-millis"}},
            {"name": "us", "type": ["null", {"type": "long", "logicalType": "timestamp-micros"}]},
        ],
    }
    decode = AvroDecoder(parse_record_schema(schema, "event.avsc"))
    records, _, _ = decode([schemaless(schema, {"ms": 1_767_225_600_250, "us": 1_767_225_601_500_000})])
    for path, unit in (("ms", "ms"), ("us", "us"), ("us", "s")):
        fields = RecordFields(ReducerSettings(time=path, time_unit=unit))
        assert fields.timestamps([], records).tolist() == [1_767_225_600.25 if path == "ms" else 1_767_225_601.5]


def test_an_avro_decimal_is_a_number_to_a_numeric_feature() -> None:
    """Avro's decimal decodes to Decimal, which is not a Real: a numeric feature counted every
    value of a decimal field (an amount, a price) as missing."""
    import numpy as np

    from distilld.codecs.avro_schema import parse_record_schema
    from distilld.features import build_graders
    from distilld.processor import DistilledProcessor

    amount = {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2}
    schema = {"type": "record", "name": "Sale", "fields": [{"name": "amount", "type": ["null", amount]}]}
    decode = AvroDecoder(parse_record_schema(schema, "sale.avsc"))
    records, _, _ = decode([schemaless(schema, {"amount": Decimal(f"{i}.25")}) for i in range(100)])
    proc = DistilledProcessor(build_graders([{"name": "amount", "type": "numeric"}]), 600, 0.1, 100)
    proc.select(records, np.full(100, 1000.0), np.zeros(100, dtype=np.int64), [None])
    assert proc.missing_counts[0] == 0


_DEEP_AVRO = """
from fastavro import parse_schema
from confluent_kafka.schema_registry import Schema
import json
from distilld.codecs.avro_codec import AvroDecoder, ConfluentAvroDecoder
from distilld.codecs.registry import SchemaRegistry

chain = {"type": "record", "name": "Link", "fields": [
    {"name": "v", "type": "long"}, {"name": "next", "type": ["null", "Link"]}]}
tree = {"type": "record", "name": "Node", "fields": [{"name": "kids", "type": {"type": "array", "items": "Node"}}]}
endless = {"type": "record", "name": "Loop", "fields": [{"name": "again", "type": "Loop"}]}
out = {}
decode = AvroDecoder(parse_schema(chain))
values = [b"\\x04\\x02" * 20 + b"\\x04\\x00", b"\\x04\\x02" * 100_000 + b"\\x04\\x00", b"\\x04\\x00"]
records, good, bad = decode(values)
out["chain"] = [good, bad, records[1]]
records, good, bad = AvroDecoder(parse_schema(tree))([b"\\x02" * 50_000 + b"\\x00" * 50_001, b"\\x02\\x00\\x00"])
out["tree"] = [good, bad, records]
out["endless"] = list(AvroDecoder(parse_schema(endless))([b"\\x00"])[1:])
registry = SchemaRegistry({"url": "mock://deep"}, wait=lambda s: False)
sid = registry.client.register_schema("deep-value", Schema(json.dumps(chain), "AVRO"))
framed = [b"\\x00" + sid.to_bytes(4, "big") + v for v in values[:2]]
out["confluent"] = list(ConfluentAvroDecoder(registry)(framed)[1:])
print(json.dumps(out))
"""


def test_deeply_nested_avro_of_a_recursive_schema_is_dead_lettered_not_a_crash() -> None:
    """A recursive schema (a linked list, a tree) lets a value nest as deep as it has bytes: fastavro's
    compiled reader recursed on the C stack and a 10,000-level value killed the process (SIGSEGV); a
    schema whose record contains itself unconditionally crashed it on any value. Run in a child
    process, so that a crash fails this test instead of ending the run."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    import distilld

    env = {**os.environ, "PYTHONPATH": str(Path(distilld.__file__).resolve().parents[1])}  # this distilld
    done = subprocess.run([sys.executable, "-c", _DEEP_AVRO], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, f"the decoder crashed the process ({done.returncode}): {done.stderr[-2000:]}"
    out = json.loads(done.stdout)
    deeper = "not Avro: nested deeper than distilld reads (a recursive schema)"
    good, bad, second = out["chain"]
    assert good == [0, 2] and bad == [[1, deeper]], "the deep one is reported; the shallow ones decode"
    assert second == {"v": 2, "next": None}
    good, bad, records = out["tree"]
    assert good == [1] and bad == [[0, deeper]] and records == [{"kids": [{"kids": []}]}]
    assert out["endless"] == [[], [[0, deeper]]]
    assert out["confluent"] == [[0], [[1, deeper]]]
    assert reason_label(deeper) == "not_avro"


def test_format_settings_name_what_is_missing_or_wrong(tmp_path: Any) -> None:
    base = {"kafka": {"bootstrap_servers": "b:9092", "group_id": "g", "input_topics": ["t"], "output_topic": "o"}}
    base["features"] = [{"name": "gender", "type": "categorical", "categories": ["female"]}]
    base["processing"] = {"on_error": "skip"}
    with pytest.raises(ConfigError, match=r"format: Value error, value 'avro' needs avro_schema|format: value 'avro'"):
        load_settings(None, **base, format={"value": "avro"})
    bad = tmp_path / "bad.avsc"
    bad.write_text('{"type": "enum", "name": "E", "symbols": ["a"]}')
    with pytest.raises(ConfigError, match=r"format\.avro_schema: .*must be an Avro record schema"):
        load_settings(None, **base, format={"value": "avro", "avro_schema": str(bad)})
    with pytest.raises(ConfigError, match=r"format\.avro_schema: cannot read"):
        load_settings(None, **base, format={"value": "avro", "avro_schema": str(tmp_path / "missing.avsc")})
    with pytest.raises(ConfigError, match=r"needs schema_registry\.url"):
        load_settings(None, **base, format={"value": "avro_confluent"})
    with pytest.raises(ConfigError, match=r"format\.schema_registry\.url: must start with http"):
        load_settings(None, **base, format={"value": "avro_confluent", "schema_registry": {"url": "registry:8081"}})
    twice = {"url": "https://u:p@r:8081", "basic_auth_user_info": "u:p"}
    with pytest.raises(ConfigError, match=r"format\.schema_registry: give the credentials in url .* not both"):
        load_settings(None, **base, format={"value": "avro_confluent", "schema_registry": twice})
    ok = load_settings(
        None,
        **base,
        format={"value": "avro_confluent", "schema_registry": {"url": "https://r:8081", "basic_auth_user_info": "u:p"}},
    )
    assert ok.format.schema_registry is not None
    assert ok.format.schema_registry.client_config()["basic.auth.user.info"] == "u:p"
    assert "u:p" not in repr(ok) and "u:p" not in str(ok.model_dump(mode="json"))


@pytest.mark.kafka
def test_daemon_reads_confluent_avro_through_an_http_registry(
    kafka_bootstrap: str, tmp_path: Any, daemons: list[DaemonProcess]
) -> None:
    """Schemas by id from a registry the suite starts; bad framing and unknown ids go
    to the DLQ with the reason; outputs are the input bytes, within the budget."""
    topic, group = unique("avro"), unique("g")
    create_topics(kafka_bootstrap, {topic: 2, f"{topic}.out": 2, f"{topic}.dlq": 1})
    people = [avro_person(r) for r in people_records(4000, seed=8)]
    values = [confluent(11, PERSON_SCHEMA, r) for r in people]
    bad = {5: b"\x07" + values[5][1:], 600: confluent(12, PERSON_SCHEMA, people[600]), 1200: b"\x00\x00\x00"}
    for i, v in bad.items():
        values[i] = v
    keys = [b"u%d" % (i % 4) for i in range(len(values))]
    sent = produce(kafka_bootstrap, topic, values, keys)
    with registry_server({11: PERSON_SCHEMA}) as url:
        config = daemon_config(
            kafka_bootstrap, topic, group, format={"value": "avro_confluent", "schema_registry": {"url": url}}
        )
        config["features"][2]["field"] = "money.income"
        d = DaemonProcess(tmp_path, config).start()
        daemons.append(d)
        wait_committed(kafka_bootstrap, group, topic, end_offsets(sent), 2, d)
        assert d.stop() == 0, d.log()
    out = read_all(kafka_bootstrap, f"{topic}.out", expect_at_least=1)
    inputs = {(s.value, s.key) for s in sent}
    assert all((m.value(), m.key()) in inputs for m in out)
    received = {k: keys.count(k) - sum(1 for i in bad if keys[i] == k) for k in set(keys)}
    for k, n in received.items():
        assert abs(sum(1 for m in out if m.key() == k) - 0.1 * n) <= 1
    dlq = {
        m.value(): dict(m.headers())["distilld-error"].decode()
        for m in read_all(kafka_bootstrap, f"{topic}.dlq", expect_at_least=3, idle_s=1)
    }
    assert set(dlq) == set(bad.values())
    assert reason_label(dlq[bad[5]]) == "bad_framing" and reason_label(dlq[bad[1200]]) == "bad_framing"
    assert dlq[bad[600]].startswith("unknown schema id 12")


@pytest.mark.kafka
def test_a_registry_down_longer_than_max_poll_interval_duplicates_nothing(
    kafka_bootstrap: str, tmp_path: Any, daemons: list[DaemonProcess]
) -> None:
    """The lookup's retry held the batch past max.poll.interval.ms: librdkafka took the consumer
    out of its group, and the records were processed and produced a second time after it joined
    again (400 outputs for 200). Now the batch's records are read again from where the reducer
    stopped, the consumer stays in its group, and every selected record is produced once."""
    topic, group = unique("avro-down"), unique("g")
    create_topics(kafka_bootstrap, {topic: 2, f"{topic}.out": 2, f"{topic}.dlq": 1})
    people = [avro_person(r) for r in people_records(3000, seed=9)]
    values = [confluent(11, PERSON_SCHEMA, r) for r in people]
    keys = [b"u%d" % (i % 4) for i in range(len(values))]
    sent = produce(kafka_bootstrap, topic, values, keys)
    with registry_server({11: PERSON_SCHEMA}, down_for_s=16.0) as url:
        config = daemon_config(
            kafka_bootstrap, topic, group, format={"value": "avro_confluent", "schema_registry": {"url": url}}
        )
        config["kafka"]["consumer"]["max.poll.interval.ms"] = 7000
        config["features"][2]["field"] = "money.income"
        d = DaemonProcess(tmp_path, config).start()
        daemons.append(d)
        wait_committed(kafka_bootstrap, group, topic, end_offsets(sent), 2, d, limit_s=120)
        assert d.stop() == 0, d.log()
    log_text = d.log()
    assert "read again from their first unprocessed record" in log_text
    assert "max.poll" not in log_text.replace("(max.poll.interval.ms)", ""), log_text  # librdkafka's own warning
    out = read_all(kafka_bootstrap, f"{topic}.out", expect_at_least=1)
    produced = [m.value() for m in out]
    assert len(produced) == len(set(produced))  # nothing produced twice
    for k in set(keys):
        assert abs(sum(1 for m in out if m.key() == k) - 0.1 * keys.count(k)) <= 1
