// Package jsonwire appends the JSON of the hot path's messages (a command
// on the topic, a response body, an idempotency record) without
// reflection. Every function writes exactly the bytes encoding/json writes
// for the same Go value, so a message's wire form does not depend on which
// encoder made it: the fingerprints the ledger and Redis keep were made from
// the canonical request's bytes, and a replay sends a stored response's
// bytes again. A value the fast path does not cover (a string with a byte
// encoding/json escapes, a time outside what RFC 3339 can say) is handed to
// encoding/json itself.
package jsonwire

import (
	"encoding/base64"
	"encoding/json"
	"strconv"
	"time"
)

// plain marks the ASCII bytes encoding/json copies into a string
// unchanged: printable ASCII except '"', '\\' and, as it escapes HTML by
// default, '<', '>' and '&'.
var plain = func() (table [256]bool) {
	for b := 0x20; b < 0x7f; b++ {
		table[b] = true
	}
	for _, b := range []byte{'"', '\\', '<', '>', '&'} {
		table[b] = false
	}
	return table
}()

// String appends s as encoding/json writes it.
func String(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if !plain[s[i]] {
			encoded, _ := json.Marshal(s) // a string always encodes
			return append(dst, encoded...)
		}
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"')
}

// Int appends n in decimal.
func Int(dst []byte, n int64) []byte { return strconv.AppendInt(dst, n, 10) }

// Bytes appends b as encoding/json writes a []byte: standard base64 in a
// string, null for a nil slice.
func Bytes(dst []byte, b []byte) []byte {
	if b == nil {
		return append(dst, "null"...)
	}
	dst = append(dst, '"')
	dst = base64.StdEncoding.AppendEncode(dst, b)
	return append(dst, '"')
}

// Time appends t as encoding/json writes it (time.Time.MarshalJSON:
// RFC 3339 with nanoseconds). It fails, as MarshalJSON does, for a year
// outside 0-9999 or a zone offset of a day or more.
func Time(dst []byte, t time.Time) ([]byte, error) {
	_, offset := t.Zone()
	if year := t.Year(); year < 0 || year > 9999 || offset <= -24*60*60 || offset >= 24*60*60 {
		encoded, err := json.Marshal(t)
		if err != nil {
			return dst, err
		}
		return append(dst, encoded...), nil
	}
	dst = append(dst, '"')
	dst = t.AppendFormat(dst, time.RFC3339Nano)
	return append(dst, '"'), nil
}
