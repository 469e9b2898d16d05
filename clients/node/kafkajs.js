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

// The bus writes snappy batches; kafkajs has gzip only built in.
CompressionCodecs[CompressionTypes.Snappy] = SnappyCodec

const env = (k, def) => {
  const v = process.env[k] ?? def
  if (v === undefined) throw new Error(`${k} is required`)
  return v
}
const ca = fs.readFileSync(env('JUTONG_CA_FILE'))
const username = env('JUTONG_USER') // dept.<code>
const password = env('JUTONG_PASSWORD')
const department = username.replace(/^dept\./, '')

const kafka = new Kafka({
  clientId: 'kafkajs-recipe',
  brokers: env('JUTONG_BROKERS').split(','),
  ssl: { ca: [ca] },
  sasl: { mechanism: 'scram-sha-256', username, password },
  logLevel: logLevel.WARN
})
// The registry authenticates with the same principal and password.
const registry = new SchemaRegistry(
  { host: env('JUTONG_REGISTRY_URL'), auth: { username, password }, agent: new https.Agent({ ca, keepAlive: true }) },
  { [SchemaType.AVRO]: { logicalTypes } })

// A topic's dispute flags are in _jutong.flags.<topic without _jutong.>.
const flagsOf = (topic) => '_jutong.flags.' + topic.replace(/^_jutong\./, '')
const topics = env('JUTONG_TOPICS').split(',')
const print = (o) => process.stdout.write(JSON.stringify(o) + '\n')

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
  const stop = env('JUTONG_STOP_EVENT')
  const stopped = new Set() // topics where the stop event was read
  const raised = new Map() // flags topic -> keys flagged and not cleared yet
  const cleared = new Set() // flags topics where a flag was raised and cleared
  let landed = !own
  const consumer = kafka.consumer({ groupId: env('JUTONG_GROUP') }) // <department>.<anything>
  // A crashed consumer is a stalled group: say so and stop.
  consumer.on(consumer.events.CRASH, ({ payload }) => { console.error('consumer crashed:', payload.error); process.exit(1) })
  await consumer.connect()
  const all = [...topics, ...topics.map(flagsOf)]
  if (own) all.push(own.item) // a source reads its own items
  await consumer.subscribe({ topics: all, fromBeginning: true })
  let done
  const finished = new Promise((resolve) => { done = resolve })
  await consumer.run({
    eachMessage: async ({ topic, partition, message }) => {
      const key = message.key && message.key.toString()
      const value = message.value === null ? null : await registry.decode(message.value)
      const disputes = message.headers['jutong.disputes']
      if (topic.startsWith('_jutong.flags.')) {
        print({ kind: 'flag', topic, partition, offset: message.offset, key, flag: value })
        const open = raised.get(topic) || new Set()
        if (value && value.disputes.length > 0) open.add(key)
        else if (open.delete(key) && open.size === 0) cleared.add(topic)
        raised.set(topic, open)
      } else if (own && topic === own.item) {
        if (value && value.event_id === own.eventId) {
          landed = true
          print({ kind: 'landed', topic, partition, offset: message.offset, event: value })
        }
      } else {
        print({ kind: 'record', topic, partition, offset: message.offset, key, disputes: disputes ? disputes.toString() : '', event: value })
        if (value && value.event_id === stop) stopped.add(topic)
      }
      if (landed && topics.every((t) => stopped.has(t) && cleared.has(flagsOf(t)))) done()
    }
  })
  const timeout = Number(env('JUTONG_TIMEOUT_S', '180')) * 1000
  const timer = setTimeout(() => {
    console.error(`timed out: stop event on ${[...stopped]}, flags cleared on ${[...cleared]}, own change landed ${landed}`)
    process.exit(2)
  }, timeout)
  await finished
  clearTimeout(timer)
  await consumer.disconnect()
  print({ kind: 'done' })
}

main().catch((e) => { console.error(e); process.exit(1) })
