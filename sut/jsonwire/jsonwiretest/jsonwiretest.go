// Package jsonwiretest draws the values the tests of jsonwire's users hold
// their hand-written encoders to encoding/json with: strings with every
// kind of byte encoding/json escapes, and times in odd zones.
package jsonwiretest

import (
	"math/rand/v2"
	"time"
)

// tricky are strings whose encoding differs from their bytes.
var tricky = []string{
	"", `"`, `\`, "<script>", "a&b", "\x00", "\x1f", "\t\n\r", "\x7f", "é", "\u2028", "\u2029",
	"\xff", "\xc3", "日本", "😀", "key with spaces", "0123456789abcdef",
}

// String draws a string: one of the tricky ones, printable ASCII, or
// random bytes.
func String(rng *rand.Rand) string {
	switch rng.IntN(3) {
	case 0:
		return tricky[rng.IntN(len(tricky))]
	case 1:
		b := make([]byte, rng.IntN(40))
		for i := range b {
			b[i] = byte(0x20 + rng.IntN(0x5f))
		}
		return string(b)
	default:
		b := make([]byte, rng.IntN(20))
		for i := range b {
			b[i] = byte(rng.IntN(256))
		}
		return string(b)
	}
}

// Int draws an int64 of any size and sign.
func Int(rng *rand.Rand) int64 {
	switch rng.IntN(3) {
	case 0:
		return int64(rng.IntN(1000)) - 500
	case 1:
		return int64(rng.Uint64())
	default:
		return rng.Int64N(1 << 40)
	}
}

// Time draws a time between the years 0 and 9999 with any nanoseconds, in
// UTC, a fixed zone of whole or odd minutes, or the local zone.
func Time(rng *rand.Rand) time.Time {
	t := time.Unix(rng.Int64N(253402300799+62135596800)-62135596800, rng.Int64N(1e9))
	switch rng.IntN(4) {
	case 0:
		return t.UTC()
	case 1:
		return t.In(time.FixedZone("odd", (rng.IntN(47)-23)*3600+rng.IntN(60)*60))
	case 2:
		return t.Truncate(time.Second).UTC()
	default:
		return t
	}
}
