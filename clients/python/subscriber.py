#!/usr/bin/python3
"""A department's subscriber and publisher written the standard way with
Debian's python3-confluent-kafka (librdkafka) and its schema-registry client:
it knows of Jutong only the brokers, its principal, the CA and the topics
(docs/clients.md). What it does and prints is what clients/node/kafkajs.js
does and prints.

confluent_kafka's own AvroSerializer and AvroDeserializer need fastavro,
which Debian 12 does not package: the few lines of avro_decode and
avro_encode below do their work with python3-avro instead, over the same
wire format (magic byte 0, the schema id in 4 bytes big-endian, Avro
binary).
"""
import datetime
import decimal
import io
import json
import os
import struct
import sys
import time
import uuid

import avro.io
import avro.schema
from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.schema_registry import SchemaRegistryClient

env = os.environ
# requests (under the registry client) lets REQUESTS_CA_BUNDLE and
# CURL_CA_BUNDLE override the CA the client is given (psf/requests#3829):
# drop them, so that ssl.ca.location below is the CA the registry is checked
# against.
for var in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
    env.pop(var, None)
user, password = env["JUTONG_KAFKA_USER"], env["JUTONG_KAFKA_PASSWORD"]  # dept.<code>
department = user.removeprefix("dept.")
kafka = {
    "bootstrap.servers": env["JUTONG_KAFKA_BROKERS"],
    "security.protocol": "SASL_SSL",
    "sasl.mechanism": "SCRAM-SHA-256",
    "sasl.username": user,
    "sasl.password": password,
    "ssl.ca.location": env["JUTONG_CA_FILE"],
}
# The registry authenticates with the same principal and password.
registry = SchemaRegistryClient({
    "url": env["JUTONG_REGISTRY_URL"],
    "basic.auth.user.info": f"{user}:{password}",
    "ssl.ca.location": env["JUTONG_CA_FILE"],
})
parsed = {}  # schema id -> avro schema


def schema(schema_id):
    if schema_id not in parsed:
        parsed[schema_id] = avro.schema.parse(registry.get_schema(schema_id).schema_str)
    return parsed[schema_id]


def avro_decode(value):
    """The Confluent wire format -> a dict (python3-avro's logical types:
    Decimal, date, datetime)."""
    if value is None:
        return None
    magic, schema_id = struct.unpack(">bI", value[:5])
    if magic != 0:
        raise ValueError("not a Confluent-framed Avro record")
    return avro.io.DatumReader(schema(schema_id)).read(avro.io.BinaryDecoder(io.BytesIO(value[5:])))


def avro_encode(subject, record):
    """A dict -> the Confluent wire format, under the latest version of
    subject (the serializer never registers: only the bus does)."""
    latest = registry.get_latest_version(subject)
    out = io.BytesIO()
    out.write(struct.pack(">bI", 0, latest.schema_id))
    avro.io.DatumWriter(schema(latest.schema_id)).write(record, avro.io.BinaryEncoder(out))
    return out.getvalue()


def portable(v):
    """Logical types as exact text: decimals at their scale, dates
    YYYY-MM-DD, timestamps ISO-8601 UTC with milliseconds."""
    if isinstance(v, dict):
        return {k: portable(x) for k, x in v.items()}
    if isinstance(v, list):
        return [portable(x) for x in v]
    if isinstance(v, decimal.Decimal):
        return str(v)
    if isinstance(v, uuid.UUID):
        return str(v)
    if isinstance(v, datetime.datetime):
        return v.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{v.microsecond // 1000:03d}Z"
    if isinstance(v, datetime.date):
        return v.isoformat()
    return v


def typed(s, v):
    """Portable JSON -> what python3-avro writes for schema s."""
    if isinstance(s, avro.schema.UnionSchema):
        if v is None:
            return None
        return typed(next(b for b in s.schemas if b.type != "null"), v)
    if isinstance(s, avro.schema.RecordSchema):
        return {f.name: typed(f.type, v.get(f.name)) for f in s.fields}
    logical = getattr(s, "logical_type", None)
    if logical == "decimal":
        return decimal.Decimal(str(v))
    if logical == "date":
        return datetime.date.fromisoformat(v[:10])
    if logical == "timestamp-millis":
        return datetime.datetime.fromisoformat(v.replace("Z", "+00:00"))
    return v


def flags_of(topic):
    """A topic's dispute flags are in _jutong.flags.<topic without _jutong.>."""
    return "_jutong.flags." + topic.removeprefix("_jutong.")


def say(o):
    sys.stdout.write(json.dumps(portable(o), ensure_ascii=False) + "\n")
    sys.stdout.flush()


def produce(path):
    """The change of an item the department is the source of, in its inbox:
    the value under the item's subject (<item>-value), the key the business
    key. The door takes the item from the schema id."""
    with open(path) as f:
        job = json.load(f)
    item, event = job["item"], job["event"]
    subject = f"{item}-value"
    latest = registry.get_latest_version(subject)
    record = typed(schema(latest.schema_id), event)
    p = Producer(dict(kafka, acks="all"))
    result = {}

    def delivered(err, msg):
        if err is not None:
            raise KafkaException(err)
        result.update(partition=msg.partition(), offset=msg.offset())

    p.produce(f"_jutong.inbox.{department}", key=event["key"], value=avro_encode(subject, record), on_delivery=delivered)
    if p.flush(30) != 0:
        raise RuntimeError("the inbox record was not acknowledged")
    say({"kind": "produced", "event_id": event["event_id"], **result})
    return item, event["event_id"]


def main():
    own = produce(env["JUTONG_PRODUCE"]) if env.get("JUTONG_PRODUCE") else None
    topics = env["JUTONG_TOPICS"].split(",")
    stop = env["JUTONG_STOP_EVENT"]
    stopped, raised, cleared, landed = set(), {}, set(), own is None
    consumer = Consumer(dict(kafka, **{
        "group.id": env["JUTONG_GROUP"],  # <department>.<anything>
        "auto.offset.reset": "earliest",
    }))
    subscribed = topics + [flags_of(t) for t in topics] + ([own[0]] if own else [])  # a source reads its own items
    consumer.subscribe(subscribed)
    deadline = time.monotonic() + float(env.get("JUTONG_TIMEOUT_S", "180"))
    while not (landed and all(t in stopped and flags_of(t) in cleared for t in topics)):
        if time.monotonic() > deadline:
            print(f"timed out: stop event on {sorted(stopped)}, flags cleared on {sorted(cleared)}, own change landed {landed}", file=sys.stderr)
            sys.exit(2)
        msg = consumer.poll(1.0)
        if msg is None:
            continue
        if msg.error():
            raise KafkaException(msg.error())
        topic, key = msg.topic(), msg.key().decode() if msg.key() else None
        value = avro_decode(msg.value())
        headers = dict(msg.headers() or [])
        where = {"topic": topic, "partition": msg.partition(), "offset": msg.offset(), "key": key}
        if topic.startswith("_jutong.flags."):
            say({"kind": "flag", **where, "flag": value})
            open_keys = raised.setdefault(topic, set())
            if value and value["disputes"]:
                open_keys.add(key)
            elif key in open_keys:
                open_keys.discard(key)
                if not open_keys:
                    cleared.add(topic)
        elif own and topic == own[0]:
            if value and value["event_id"] == own[1]:
                landed = True
                say({"kind": "landed", **where, "event": value})
        else:
            disputes = headers.get("jutong.disputes", b"").decode()
            say({"kind": "record", **where, "disputes": disputes, "event": value})
            if value and value["event_id"] == stop:
                stopped.add(topic)
    consumer.close()
    say({"kind": "done"})


if __name__ == "__main__":
    main()
