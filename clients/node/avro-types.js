'use strict'
// Avro logical types for avsc, the Avro library both Node registries use:
// Jutong's records carry decimal (bytes), date (int) and timestamp-millis
// (long) fields. Without these, avsc hands over the raw Buffer, day count
// and millisecond count. Here a decimal is exact text ("500.0000"), a date
// "YYYY-MM-DD" and a timestamp an ISO-8601 UTC string with milliseconds, on
// reading and writing alike (docs/clients.md, "Logical types").
const avsc = require('avsc')

class Decimal extends avsc.types.LogicalType {
  constructor (attrs, opts) {
    super(attrs, opts)
    this.scale = attrs.scale || 0
  }

  // two's complement, big-endian -> fixed-point text
  _fromValue (buf) {
    let n = 0n
    for (const b of buf) n = (n << 8n) | BigInt(b)
    if (buf.length > 0 && (buf[0] & 0x80)) n -= 1n << BigInt(8 * buf.length)
    const neg = n < 0n
    let s = (neg ? -n : n).toString().padStart(this.scale + 1, '0')
    if (this.scale > 0) s = s.slice(0, -this.scale) + '.' + s.slice(-this.scale)
    return (neg ? '-' : '') + s
  }

  // text (or a number) -> two's complement at the field's scale
  _toValue (v) {
    const [int, frac = ''] = String(v).replace(/^-/, '').split('.')
    if (frac.length > this.scale) throw new Error(`decimal ${v} has more than ${this.scale} decimals`)
    let n = BigInt(int + frac.padEnd(this.scale, '0'))
    if (String(v).startsWith('-')) n = -n
    const bytes = []
    for (;;) {
      bytes.unshift(Number(n & 0xffn))
      n >>= 8n // arithmetic shift: -1 stays -1
      const sign = bytes[0] & 0x80
      if ((n === 0n && !sign) || (n === -1n && sign)) break
    }
    return Buffer.from(bytes)
  }

  _resolve (type) {
    if (avsc.Type.isType(type, 'logical:decimal') && type.scale === this.scale) return (x) => x
  }
}

class DateOnly extends avsc.types.LogicalType {
  _fromValue (days) { return new Date(days * 86400000).toISOString().slice(0, 10) }
  _toValue (v) { return Math.round(Date.parse(typeof v === 'string' ? v.slice(0, 10) + 'T00:00:00Z' : v) / 86400000) }
  _resolve (type) { if (avsc.Type.isType(type, 'int', 'logical:date')) return this._fromValue.bind(this) }
}

class TimestampMillis extends avsc.types.LogicalType {
  _fromValue (ms) { return new Date(ms).toISOString() }
  _toValue (v) { return typeof v === 'number' ? v : Date.parse(v) }
  _resolve (type) { if (avsc.Type.isType(type, 'long', 'logical:timestamp-millis')) return this._fromValue.bind(this) }
}

module.exports = { decimal: Decimal, date: DateOnly, 'timestamp-millis': TimestampMillis }
