'use strict'
// A department's subscriber and publisher written the standard way with
// kafkajs and @kafkajs/confluent-schema-registry: it knows of Jutong only the
// brokers, its principal, the CA and the topics (docs/clients.md).
//
// It reads each topic of JUTONG_TOPICS (an item's topic, a grant's feed) and
// the topic's flags topic, decodes every record with the registry, publishes
// the change in JUTONG_PRODUCE (if set) to its department's inbox with the
// registry's serializer, and prints one JSON line per record it read (the
// test suite in clients/ reads them). It stops once it has read
// JUTONG_STOP_EVENT on every topic, seen on each flags topic a flag raised
// and cleared, and found its own change on its item's topic.
const fs = require('fs')
const https = require('https')
const { Kafka, CompressionTypes, CompressionCodecs, logLevel } = require('kafkajs')
const SnappyCodec = require('kafkajs-snappy')
const { SchemaRegistry, SchemaType } = require('@kafkajs/confluent-schema-registry')
const logicalTypes = require('./avro-types')
const { flagsOf, print, tracker } = require('./harness') // the test suite's bookkeeping

// The bus writes snappy batches; kafkajs has gzip only built in.
CompressionCodecs[CompressionTypes.Snappy] = SnappyCodec

const env = (k, def) => {
  const v = process.env[k] ?? def
  if (v === undefined) throw new Error(`${k} is required`)
  return v
}
const ca = fs.readFileSync(env('JUTONG_CA_FILE'))
const username = env('JUTONG_KAFKA_USER') // dept.<code>
const password = env('JUTONG_KAFKA_PASSWORD')
const department = username.replace(/^dept\./, '')

const kafka = new Kafka({
  clientId: 'kafkajs-recipe',
  brokers: env('JUTONG_KAFKA_BROKERS').split(','),
  ssl: { ca: [ca] },
  sasl: { mechanism: 'scram-sha-256', username, password },
  logLevel: logLevel.WARN
})
// The registry authenticates with the same principal and password.
const registry = new SchemaRegistry(
  { host: env('JUTONG_REGISTRY_URL'), auth: { username, password }, agent: new https.Agent({ ca, keepAlive: true }) },
  { [SchemaType.AVRO]: { logicalTypes } })

const topics = env('JUTONG_TOPICS').split(',')

async function produce (file) {
  // The change of an item the department is the source of, in its inbox:
  // the value under the item's registered subject (<item>-value), the key
  // the business key. The door takes the item from the schema id.
  const { item, event } = JSON.parse(fs.readFileSync(file))
  const id = await registry.getLatestSchemaId(`${item}-value`)
  const producer = kafka.producer({ allowAutoTopicCreation: false })
  await producer.connect()
  const [res] = await producer.send({
    topic: `_jutong.inbox.${department}`,
    acks: -1,
    messages: [{ key: event.key, value: await registry.encode(id, event) }]
  })
  await producer.disconnect()
  print({ kind: 'produced', event_id: event.event_id, partition: res.partition, offset: res.baseOffset })
  return { item, eventId: event.event_id }
}

async function main () {
  const own = process.env.JUTONG_PRODUCE ? await produce(process.env.JUTONG_PRODUCE) : null
  const track = tracker({ topics, stop: env('JUTONG_STOP_EVENT'), own })
  const consumer = kafka.consumer({ groupId: env('JUTONG_GROUP') }) // <department>.<anything>
  // A crashed consumer is a stalled group: say so and stop.
  consumer.on(consumer.events.CRASH, ({ payload }) => { console.error('consumer crashed:', payload.error); process.exit(1) })
  await consumer.connect()
  const all = [...topics, ...topics.map(flagsOf)] // each topic and its flags topic, _jutong.flags.<topic without _jutong.>
  if (own) all.push(own.item) // a source reads its own items
  await consumer.subscribe({ topics: all, fromBeginning: true })
  let done
  const finished = new Promise((resolve) => { done = resolve })
  await consumer.run({
    eachMessage: async ({ topic, partition, message }) => {
      const key = message.key && message.key.toString()
      const value = message.value === null ? null : await registry.decode(message.value)
      const header = message.headers['jutong.disputes'] // the record's open disputes, if any
      const disputes = header ? header.toString() : ''
      if (track.seen(topic, partition, message.offset, key, value, disputes)) done()
    }
  })
  const timeout = Number(env('JUTONG_TIMEOUT_S', '180')) * 1000
  const timer = setTimeout(() => {
    console.error('timed out: ' + track.state())
    process.exit(2)
  }, timeout)
  await finished
  clearTimeout(timer)
  await consumer.disconnect()
  print({ kind: 'done' })
}

main().catch((e) => { console.error(e); process.exit(1) })
