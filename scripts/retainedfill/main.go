// Command retainedfill publishes N retained messages, each to its own topic,
// and reports how the broker's resident memory grew: the measure of issue
// 21's "1,000,000 retained messages" (docs/BENCHMARKS.md). Topics are
// dev/<i/1000>/<i%1000>/state, payloads 20 bytes of JSON, QoS 1.
//
//	go run ./scripts/retainedfill -addr 127.0.0.1:1883 -n 1000000 -pid $(pidof petrel)
//
// With -pid, the broker's VmRSS is read before the first publish and again
// after the last acknowledgement and -settle, and the growth is printed per
// message, with the topic and payload bytes that are the messages' own.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:1883", "the broker's host:port")
	n := flag.Int("n", 1_000_000, "retained messages to publish")
	inflight := flag.Int("inflight", 256, "QoS 1 publishes awaiting their PUBACK")
	pid := flag.Int("pid", 0, "the broker's process id, to read its VmRSS (Linux)")
	settle := flag.Duration("settle", 5*time.Second, "wait after the last PUBACK before reading VmRSS")
	flag.Parse()
	if err := run(*addr, *n, *inflight, *pid, *settle); err != nil {
		fmt.Fprintln(os.Stderr, "retainedfill:", err)
		os.Exit(1)
	}
}

func run(addr string, n, inflight, pid int, settle time.Duration) error {
	opts := mqtt.NewClientOptions().AddBroker("tcp://" + addr).SetClientID("retainedfill").
		SetCleanSession(true).SetAutoReconnect(false).SetMaxResumePubInFlight(inflight)
	c := mqtt.NewClient(opts)
	if t := c.Connect(); !t.WaitTimeout(10*time.Second) || t.Error() != nil {
		return fmt.Errorf("connect to %s: %v", addr, t.Error())
	}
	defer c.Disconnect(250)
	before, err := rss(pid)
	if err != nil {
		return err
	}
	start := time.Now()
	window := make(chan mqtt.Token, inflight)
	own := 0 // topic and payload bytes
	wait := func(t mqtt.Token) error {
		t.Wait()
		if t.Error() != nil {
			return fmt.Errorf("publish: %w", t.Error())
		}
		return nil
	}
	for i := range n {
		topic := fmt.Sprintf("dev/%d/%d/state", i/1000, i%1000)
		payload := fmt.Sprintf(`{"on":true,"v":%04d}`, i%10000)
		own += len(topic) + len(payload)
		if len(window) == cap(window) {
			if err := wait(<-window); err != nil {
				return err
			}
		}
		window <- c.Publish(topic, 1, true, payload)
	}
	for len(window) > 0 {
		if err := wait(<-window); err != nil {
			return err
		}
	}
	took := time.Since(start)
	fmt.Printf("published %d retained messages in %v (%.0f/s); topic and payload %.1f bytes a message\n",
		n, took.Round(time.Millisecond), float64(n)/took.Seconds(), float64(own)/float64(n))
	if pid == 0 {
		return nil
	}
	time.Sleep(settle)
	after, err := rss(pid)
	if err != nil {
		return err
	}
	grew := after - before
	fmt.Printf("broker VmRSS %d kB -> %d kB: %.1f bytes a message, %.1f beyond topic and payload\n",
		before/1024, after/1024, float64(grew)/float64(n), float64(grew-int64(own))/float64(n))
	return nil
}

// rss returns the VmRSS of process pid in bytes, or 0 for pid 0.
func rss(pid int) (int64, error) {
	if pid == 0 {
		return 0, nil
	}
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("read the broker's memory: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("VmRSS of process %d: %q: %w", pid, v, err)
			}
			return kb * 1024, nil
		}
	}
	return 0, fmt.Errorf("no VmRSS for process %d", pid)
}
