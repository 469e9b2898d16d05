'use strict'
// What the test suite in clients/ wants of a recipe, apart from the
// recipe itself: one JSON line per record read, and when to stop (the stop
// event read on every topic, on each flags topic a flag raised and cleared,
// and the recipe's own change found on its item's topic).
const flagsOf = (topic) => '_jutong.flags.' + topic.replace(/^_jutong\./, '')
const print = (o) => process.stdout.write(JSON.stringify(o) + '\n')

function tracker ({ topics, stop, own }) {
  const stopped = new Set() // topics where the stop event was read
  const raised = new Map() // flags topic -> keys flagged and not cleared yet
  const cleared = new Set() // flags topics where a flag was raised and cleared
  let landed = !own
  return {
    // seen prints a record and says whether the recipe may stop.
    seen (topic, partition, offset, key, value, disputes) {
      if (topic.startsWith('_jutong.flags.')) {
        print({ kind: 'flag', topic, partition, offset, key, flag: value })
        const open = raised.get(topic) || new Set()
        if (value && value.disputes.length > 0) open.add(key)
        else if (open.delete(key) && open.size === 0) cleared.add(topic)
        raised.set(topic, open)
      } else if (own && topic === own.item) {
        if (value && value.event_id === own.eventId) {
          landed = true
          print({ kind: 'landed', topic, partition, offset, event: value })
        }
      } else {
        print({ kind: 'record', topic, partition, offset, key, disputes, event: value })
        if (value && value.event_id === stop) stopped.add(topic)
      }
      return landed && topics.every((t) => stopped.has(t) && cleared.has(flagsOf(t)))
    },
    state () { return `stop event on ${[...stopped]}, flags cleared on ${[...cleared]}, own change landed ${landed}` }
  }
}

module.exports = { flagsOf, print, tracker }
