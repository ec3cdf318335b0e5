package main

import (
	"log/slog"
	"os"
	"time"

	"github.com/petrelmq/petrel/broker"
	"github.com/petrelmq/petrel/store"
)

// shutdown stops the broker after sig: it stops accepting, tells MQTT 5
// clients why they lose their connection (DISCONNECT 0x8B), closes every
// connection, commits what is left and closes the store, logging each step
// (Server.Close logs its own). It returns the exit code: 0 once all that is
// done, 1 when something failed, or when it did not finish within timeout,
// in which case it returns at once and the process exits without waiting
// for the rest. Nothing acknowledged to a client depends on the rest: the
// store has it (store.sync).
//
// Signals that come meanwhile are ignored, not taken as a demand to hurry:
// some supervisors deliver one SIGTERM twice (timeout(1) sends it to the
// process and to its group); the timeout bounds the wait.
func shutdown(srv *broker.Server, st store.Store, sig os.Signal, timeout time.Duration, log *slog.Logger) int {
	start := time.Now()
	log.Info("shutting down", "signal", sig.String(), "shutdown_timeout", timeout)
	done := make(chan int, 1)
	go func() {
		code := 0
		if err := srv.Close(); err != nil {
			log.Error("shutdown", "err", err)
			code = 1
		}
		if err := st.Close(); err != nil {
			log.Error("closing the store", "err", err)
			code = 1
		} else {
			log.Info("shutdown: store closed", "elapsed", time.Since(start).Round(time.Millisecond))
		}
		done <- code
	}()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case code := <-done:
		log.Info("shutdown complete", "took", time.Since(start).Round(time.Millisecond))
		return code
	case <-timer.C:
		log.Error("shutdown timed out: exiting without waiting for the rest", "shutdown_timeout", timeout)
		return 1
	}
}
