package pebblestore

import (
	"encoding/binary"

	"github.com/petrelmq/petrel/store"
)

// formatKey holds the store's store.FormatVersion in decimal. It sorts
// before every record because no namespace byte is zero.
var formatKey = []byte("\x00format")

// appendKey appends op's key to dst. For an AllQueue delete it is the queue's
// prefix.
func appendKey(dst []byte, op *store.Op) []byte {
	switch op.NS {
	case store.Queues:
		if op.AllQueue {
			return appendQueuePrefix(dst, op.Name)
		}
		return binary.BigEndian.AppendUint64(appendQueuePrefix(dst, op.Name), op.Num)
	case store.Messages:
		return binary.BigEndian.AppendUint64(append(dst, byte(store.Messages)), op.Num)
	default: // Sessions, Retained: the name follows the namespace byte.
		return append(append(dst, byte(op.NS)), op.Name...)
	}
}

// appendQueuePrefix appends the prefix every key of the named queue starts
// with: 'q', the name's length as a uvarint, the name. The length makes the
// prefixes of two different queues never a prefix of one another (the
// prefix of "a" is not one of "ab"'s), so a queue's entries are one
// contiguous range that holds nothing else.
func appendQueuePrefix(dst []byte, queue string) []byte {
	dst = append(dst, byte(store.Queues))
	dst = binary.AppendUvarint(dst, uint64(len(queue)))
	return append(dst, queue...)
}

// prefixEnd returns the smallest key greater than every key starting with
// prefix: the exclusive upper bound of prefix's range. Every prefix here
// starts with a namespace byte below 0xff, so one exists.
func prefixEnd(prefix []byte) []byte {
	end := append([]byte(nil), prefix...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] != 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	panic("pebblestore: no key follows an all-0xff prefix")
}

// namespaceBounds returns the key range of one namespace.
func namespaceBounds(ns store.Namespace) (lower, upper []byte) {
	return []byte{byte(ns)}, []byte{byte(ns) + 1}
}

// seqOf decodes the sequence number at the end of a queue key.
func seqOf(key []byte) uint64 { return binary.BigEndian.Uint64(key[len(key)-8:]) }
