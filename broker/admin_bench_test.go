package broker

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkClientsPage measures one page of 100 clients out of a large
// session table (offline sessions made in place, without connections). A
// page takes no lock but one shard's, to copy its pointers; fill-ms is how
// long the first page takes to fill the directory, table-lock-ms how long
// of that it holds the session table's lock (to copy its pointers).
//
//	go test -run=NONE -bench=ClientsPage -benchtime=2000x ./broker
func BenchmarkClientsPage(b *testing.B) {
	for _, n := range []int{10_000, 1_000_000} {
		b.Run(fmt.Sprintf("sessions=%d", n), func(b *testing.B) {
			s := New(Options{})
			s.mu.Lock()
			for i := range n {
				ss := s.newSession(fmt.Sprintf("client-%07d", i), 0)
				ss.asideLocked().since = time.Now().UnixNano()
				s.sessions.set(ss)
			}
			s.mu.Unlock()
			fill := time.Now()
			var held time.Duration
			s.admin.dir.fill.Do(func() { held = s.fillDirectory() })
			filled := time.Since(fill)
			cursor := ""
			b.ResetTimer()
			for range b.N {
				page, err := s.Clients(ClientQuery{Cursor: cursor, Limit: 100})
				if err != nil {
					b.Fatal(err)
				}
				cursor = page.Next
			}
			b.ReportMetric(float64(filled.Microseconds())/1000, "fill-ms")
			b.ReportMetric(float64(held.Microseconds())/1000, "table-lock-ms")
		})
	}
}
