'use strict'
// A department's subscriber and publisher written the standard way with
// Confluent's own Node.js clients, @confluentinc/kafka-javascript (librdkafka,
// in its KafkaJS-compatible API) and @confluentinc/schemaregistry's Avro
// serializer and deserializer: it knows of Jutong only the brokers, its
// principal, the CA and the topics (docs/clients.md). What it does and prints
// is what kafkajs.js does and prints.
const fs = require('fs')
const https = require('https')
const { KafkaJS } = require('@confluentinc/kafka-javascript')
const { SchemaRegistryClient, SerdeType, AvroSerializer, AvroDeserializer } = require('@confluentinc/schemaregistry')
const logicalTypes = require('./avro-types')
const { flagsOf, print, tracker } = require('./harness') // the test suite's bookkeeping

const env = (k, def) => {
  const v = process.env[k] ?? def
  if (v === undefined) throw new Error(`${k} is required`)
  return v
}
const caFile = env('JUTONG_CA_FILE')
const username = env('JUTONG_KAFKA_USER') // dept.<code>
const password = env('JUTONG_KAFKA_PASSWORD')
const department = username.replace(/^dept\./, '')

const kafka = new KafkaJS.Kafka({
  kafkaJS: {
    brokers: env('JUTONG_KAFKA_BROKERS').split(','),
    ssl: true,
    sasl: { mechanism: 'scram-sha-256', username, password },
    logLevel: KafkaJS.logLevel.WARN
  },
  'ssl.ca.location': caFile // librdkafka's own setting, beside the KafkaJS ones
})
// The registry authenticates with the same principal and password.
const registry = new SchemaRegistryClient({
  baseURLs: [env('JUTONG_REGISTRY_URL')],
  basicAuthCredentials: { credentialsSource: 'USER_INFO', userInfo: `${username}:${password}` },
  createAxiosDefaults: { httpsAgent: new https.Agent({ ca: fs.readFileSync(caFile) }) }
})
// The topic name strategy (<topic>-value) finds every topic's schema: an
// item's, a feed's, a flags topic's.
const deserializer = new AvroDeserializer(registry, SerdeType.VALUE, { logicalTypes })

const topics = env('JUTONG_TOPICS').split(',')

async function produce (file) {
  // The inbox carries every item of the department: the item's subject is
  // named (<item>-value) instead of the inbox topic's, and the serializer
  // takes its latest version (it never registers: only the bus does).
  const { item, event } = JSON.parse(fs.readFileSync(file))
  const serializer = new AvroSerializer(registry, SerdeType.VALUE, {
    useLatestVersion: true, autoRegisterSchemas: false, subjectNameStrategy: () => `${item}-value`, logicalTypes
  })
  const topic = `_jutong.inbox.${department}`
  const producer = kafka.producer({ kafkaJS: { acks: -1 } })
  await producer.connect()
  const [res] = await producer.send({ topic, messages: [{ key: event.key, value: await serializer.serialize(topic, event) }] })
  await producer.disconnect()
  print({ kind: 'produced', event_id: event.event_id, partition: res.partition, offset: res.baseOffset })
  return { item, eventId: event.event_id }
}

async function main () {
  const own = process.env.JUTONG_PRODUCE ? await produce(process.env.JUTONG_PRODUCE) : null
  const track = tracker({ topics, stop: env('JUTONG_STOP_EVENT'), own })
  const consumer = kafka.consumer({ kafkaJS: { groupId: env('JUTONG_GROUP'), fromBeginning: true } })
  await consumer.connect()
  const all = [...topics, ...topics.map(flagsOf)] // each topic and its flags topic, _jutong.flags.<topic without _jutong.>
  if (own) all.push(own.item) // a source reads its own items
  await consumer.subscribe({ topics: all })
  let done
  const finished = new Promise((resolve) => { done = resolve })
  await consumer.run({
    eachMessage: async ({ topic, partition, message }) => {
      const key = message.key && message.key.toString()
      const value = message.value === null ? null : await deserializer.deserialize(topic, message.value)
      const header = message.headers && message.headers['jutong.disputes']
      const disputes = header ? header.toString() : ''
      if (track.seen(topic, partition, message.offset, key, value, disputes)) done()
    }
  })
  const timer = setTimeout(() => {
    console.error('timed out: ' + track.state())
    process.exit(2)
  }, Number(env('JUTONG_TIMEOUT_S', '180')) * 1000)
  await finished
  clearTimeout(timer)
  await consumer.disconnect()
  print({ kind: 'done' })
}

main().catch((e) => { console.error(e); process.exit(1) })
