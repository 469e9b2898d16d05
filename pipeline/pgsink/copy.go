package pgsink

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/jutong/jutong/model/catalog"
	"github.com/jutong/jutong/pipeline"
	"github.com/jutong/jutong/schemas"
)

// The large groups of a batch are copied into the staging table in
// PostgreSQL's binary COPY format, written here straight from the batch's
// columns (schemas.Columns): no value boxed per field, no per-value type
// lookup in pgx. The bytes are what pgx's CopyFrom would send for the same
// values (TestBinaryCopy compares the tables).

// pgEpoch is 2000-01-01 UTC, where PostgreSQL counts dates and timestamps from.
var (
	pgEpochDays = int64(10957)                 // days from 1970-01-01
	pgEpochUs   = int64(946684800) * 1_000_000 // µs from the Unix epoch
	copyHeader  = []byte("PGCOPY\n\377\r\n\000\000\000\000\000\000\000\000\000")
)

// errNotUUID: an event id that is no UUID in the form this writer reads; the
// group goes through pgx instead (PostgreSQL then says what it makes of it).
var errNotUUID = errors.New("pgsink: event id not in the 8-4-4-4-12 hex form")

// copyRow is one row to copy: a record whose fields are in columns.
type copyRow struct {
	cols *schemas.Columns
	row  int
	rec  *pipeline.Record
}

// binaryCopy writes rows in the binary COPY format, the item's fields then
// the metadata columns (columns(it)).
func binaryCopy(it *catalog.Item, rows []copyRow, landed time.Time) ([]byte, error) {
	buf := make([]byte, 0, 64+len(rows)*(32*len(it.Fields)+96))
	buf = append(buf, copyHeader...)
	nFields := int16(len(it.Fields) + len(metaColumns))
	landedUs := landed.UnixMicro() - pgEpochUs
	for _, r := range rows {
		c, i := r.cols, r.row
		buf = binary.BigEndian.AppendUint16(buf, uint16(nFields))
		for j := range c.Fields {
			col := &c.Fields[j]
			if col.Null[i] {
				buf = binary.BigEndian.AppendUint32(buf, math.MaxUint32) // -1: NULL
				continue
			}
			switch col.Field.Type {
			case catalog.TypeString, catalog.TypeEnum:
				buf = appendText(buf, col.Str[i])
			case catalog.TypeLong:
				buf = appendInt8(buf, col.Int[i])
			case catalog.TypeDouble:
				buf = appendInt8(buf, int64(math.Float64bits(col.Float[i])))
			case catalog.TypeBoolean:
				buf = append(buf, 0, 0, 0, 1, byte(col.Int[i]))
			case catalog.TypeDate:
				buf = binary.BigEndian.AppendUint32(buf, 4)
				buf = binary.BigEndian.AppendUint32(buf, uint32(int32(col.Int[i]-pgEpochDays)))
			case catalog.TypeTimestamp:
				buf = appendInt8(buf, col.Int[i]*1000-pgEpochUs)
			case catalog.TypeDecimal:
				var err error
				if buf, err = appendNumeric(buf, col, i); err != nil {
					return nil, fmt.Errorf("pgsink: %s field %s: %w", it.Code, col.Field.Name, err)
				}
			}
		}
		var err error
		if buf, err = appendUUID(buf, c.ID[i]); err != nil {
			return nil, err
		}
		buf = appendText(buf, string(c.Op[i]))
		buf = appendInt8(buf, c.EventTime[i]*1000-pgEpochUs)
		buf = appendInt8(buf, c.PublishTime[i]*1000-pgEpochUs)
		buf = appendInt8(buf, landedUs)
		buf = binary.BigEndian.AppendUint32(buf, 4)
		buf = binary.BigEndian.AppendUint32(buf, uint32(r.rec.Partition))
		buf = appendInt8(buf, r.rec.Offset)
	}
	return binary.BigEndian.AppendUint16(buf, math.MaxUint16), nil // the trailer: -1
}

func appendText(buf []byte, s string) []byte {
	buf = binary.BigEndian.AppendUint32(buf, uint32(len(s)))
	return append(buf, s...)
}

func appendInt8(buf []byte, n int64) []byte {
	buf = binary.BigEndian.AppendUint32(buf, 8)
	return binary.BigEndian.AppendUint64(buf, uint64(n))
}

// appendUUID writes a UUID given as 8-4-4-4-12 hex digits (what the SDKs
// make) as its 16 bytes.
func appendUUID(buf []byte, s string) ([]byte, error) {
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return nil, errNotUUID
	}
	var hexd [32]byte
	copy(hexd[0:8], s[0:8])
	copy(hexd[8:12], s[9:13])
	copy(hexd[12:16], s[14:18])
	copy(hexd[16:20], s[19:23])
	copy(hexd[20:32], s[24:36])
	var b [16]byte
	if _, err := hex.Decode(b[:], hexd[:]); err != nil {
		return nil, errNotUUID
	}
	buf = binary.BigEndian.AppendUint32(buf, 16)
	return append(buf, b[:]...), nil
}

// appendNumeric writes a decimal in the numeric's binary form: base-10000
// digits, a weight, a sign, the display scale.
func appendNumeric(buf []byte, col *schemas.Column, i int) ([]byte, error) {
	scale := col.Field.Scale
	var d []byte // the decimal digits of the absolute unscaled value
	neg := false
	if b := col.Big[i]; b != nil {
		neg = b.Sign() < 0
		d = []byte(strings.TrimPrefix(b.String(), "-"))
	} else {
		u := col.Int[i]
		neg = u < 0
		mag := uint64(u)
		if neg {
			mag = uint64(-u)
		}
		d = strconv.AppendUint(nil, mag, 10)
	}
	if scale > math.MaxInt16 || len(d) > 1000 {
		return nil, fmt.Errorf("decimal out of range")
	}
	// Integer and fraction digits, padded to whole groups of four.
	intLen := len(d) - scale
	var intPart, frac []byte
	if intLen > 0 {
		intPart, frac = d[:intLen], d[intLen:]
	} else {
		frac = append(bytes.Repeat([]byte{'0'}, -intLen), d...)
	}
	if pad := (4 - len(intPart)%4) % 4; pad > 0 {
		intPart = append(bytes.Repeat([]byte{'0'}, pad), intPart...)
	}
	if pad := (4 - len(frac)%4) % 4; pad > 0 {
		frac = append(frac, bytes.Repeat([]byte{'0'}, pad)...)
	}
	all := make([]byte, 0, len(intPart)+len(frac))
	all = append(append(all, intPart...), frac...)
	groups := make([]int16, 0, len(all)/4)
	for k := 0; k < len(all); k += 4 {
		g := int16(all[k]-'0')*1000 + int16(all[k+1]-'0')*100 + int16(all[k+2]-'0')*10 + int16(all[k+3]-'0')
		groups = append(groups, g)
	}
	weight := len(intPart)/4 - 1
	for len(groups) > 0 && groups[0] == 0 {
		groups, weight = groups[1:], weight-1
	}
	for len(groups) > 0 && groups[len(groups)-1] == 0 {
		groups = groups[:len(groups)-1]
	}
	sign := uint16(0)
	if neg && len(groups) > 0 {
		sign = 0x4000
	}
	if len(groups) == 0 {
		weight = 0
	}
	buf = binary.BigEndian.AppendUint32(buf, uint32(8+2*len(groups)))
	buf = binary.BigEndian.AppendUint16(buf, uint16(len(groups)))
	buf = binary.BigEndian.AppendUint16(buf, uint16(int16(weight)))
	buf = binary.BigEndian.AppendUint16(buf, sign)
	buf = binary.BigEndian.AppendUint16(buf, uint16(scale))
	for _, g := range groups {
		buf = binary.BigEndian.AppendUint16(buf, uint16(g))
	}
	return buf, nil
}

// copyColumns copies rows into table stage (binary, from the columns).
func copyColumns(ctx context.Context, tx pgx.Tx, stage string, it *catalog.Item, rows []copyRow, landed time.Time) error {
	data, err := binaryCopy(it, rows, landed)
	if err != nil {
		return err
	}
	cols := columns(it)
	quoted := make([]string, len(cols))
	for i, c := range cols {
		quoted[i] = pgx.Identifier{c}.Sanitize()
	}
	sql := fmt.Sprintf("COPY %s (%s) FROM STDIN (FORMAT binary)", pgx.Identifier{stage}.Sanitize(), strings.Join(quoted, ", "))
	_, err = tx.Conn().PgConn().CopyFrom(ctx, bytes.NewReader(data), sql)
	return err
}
