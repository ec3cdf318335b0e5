package broker

import (
	"encoding/base64"
	"encoding/binary"
)

// The cursors of the admin methods' pages (admin.go): opaque to callers,
// base64url of a kind, the position and, for subscriptions, the key of
// the last one taken. A cursor is good for the life of the Server that
// gave it: the directory's shards are seeded afresh by each.

// Cursor kinds, so that one kind of page refuses another's cursor.
const (
	cursorClients       = 'c'
	cursorSubscriptions = 's'
	cursorRetained      = 'r'
)

func encodeDirCursor(kind byte, pos dirPosition, key string) string {
	b := []byte{kind, byte(pos.shard >> 8), byte(pos.shard), 0}
	if pos.started {
		b[3] = 1
	}
	b = appendString(b, pos.after)
	b = appendString(b, key)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeDirCursor(cursor string, kind byte) (pos dirPosition, key string, err error) {
	if cursor == "" {
		return dirPosition{}, "", nil
	}
	b, err := base64.RawURLEncoding.DecodeString(cursor)
	if err != nil || len(b) < 4 || b[0] != kind || b[3] > 1 {
		return dirPosition{}, "", ErrBadCursor
	}
	pos.shard, pos.started = int(b[1])<<8|int(b[2]), b[3] == 1
	b = b[4:]
	var ok1, ok2 bool
	pos.after, b, ok1 = readString(b)
	key, b, ok2 = readString(b)
	if !ok1 || !ok2 || len(b) != 0 || pos.shard >= dirShards {
		return dirPosition{}, "", ErrBadCursor
	}
	return pos, key, nil
}

func encodeRetainedCursor(levels []string) string {
	b := binary.AppendUvarint([]byte{cursorRetained}, uint64(len(levels)))
	for _, l := range levels {
		b = appendString(b, l)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// decodeRetainedCursor returns the levels of the path to resume after,
// nil for the start.
func decodeRetainedCursor(cursor string) ([]string, error) {
	if cursor == "" {
		return nil, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(cursor)
	if err != nil || len(b) < 2 || b[0] != cursorRetained {
		return nil, ErrBadCursor
	}
	n, k := binary.Uvarint(b[1:])
	if k <= 0 || n > uint64(len(b)) {
		return nil, ErrBadCursor
	}
	b = b[1+k:]
	levels := make([]string, n)
	for i := range levels {
		var ok bool
		if levels[i], b, ok = readString(b); !ok {
			return nil, ErrBadCursor
		}
	}
	if len(b) != 0 {
		return nil, ErrBadCursor
	}
	return levels, nil
}

func appendString(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

func readString(b []byte) (string, []byte, bool) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)-k) {
		return "", nil, false
	}
	return string(b[k : k+int(n)]), b[k+int(n):], true
}
