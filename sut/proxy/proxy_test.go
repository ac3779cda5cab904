package proxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// echoServer answers every line with the same line, until the test ends.
func echoServer(t *testing.T) string {
	t.Helper()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { listener.Close() })
	go func() {
		for {
			connection, err := listener.Accept()
			if err != nil {
				return
			}
			go func() {
				defer connection.Close()
				_, _ = io.Copy(connection, connection)
			}()
		}
	}()
	return listener.Addr().String()
}

func freeAddress(t *testing.T) string {
	t.Helper()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer listener.Close()
	return listener.Addr().String()
}

// startProxy runs the proxy with one link named name in front of upstream
// and returns its client and the link's listen address.
func startProxy(t *testing.T, name, upstream string) (*Client, string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	api, listen := freeAddress(t), freeAddress(t)
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{APIListen: api, Links: []Link{{Name: name, Listen: listen, Upstream: upstream, Enabled: true}}})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	client := NewClient("http://" + api)
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := client.Links(ctx); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("proxy API never answered: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return client, listen
}

// roundTrip sends a line through address and times the echo.
func roundTrip(address string) (time.Duration, error) {
	connection, err := net.DialTimeout("tcp", address, time.Second)
	if err != nil {
		return 0, err
	}
	defer connection.Close()
	_ = connection.SetDeadline(time.Now().Add(2 * time.Second))
	began := time.Now()
	if _, err := io.WriteString(connection, "ping\n"); err != nil {
		return 0, err
	}
	line, err := bufio.NewReader(connection).ReadString('\n')
	if err != nil {
		return 0, err
	}
	if line != "ping\n" {
		return 0, errors.New("echo answered " + line)
	}
	return time.Since(began), nil
}

// TestFaults: a link name with "->" works through the API; latency delays
// the echo; disabling refuses connections; removing toxics and enabling
// heals.
func TestFaults(t *testing.T) {
	ctx := context.Background()
	const name = "worker->postgres"
	client, listen := startProxy(t, name, echoServer(t))
	if _, err := roundTrip(listen); err != nil {
		t.Fatalf("through a healthy link: %v", err)
	}
	if err := client.AddToxic(ctx, name, Toxic{Name: "slow", Type: "latency", Stream: "downstream", Toxicity: 1,
		Attributes: map[string]int64{"latency": 300}}); err != nil {
		t.Fatal(err)
	}
	elapsed, err := roundTrip(listen)
	if err != nil || elapsed < 300*time.Millisecond {
		t.Fatalf("with 300ms latency: round trip %s, %v", elapsed, err)
	}
	if err := client.RemoveToxics(ctx, name); err != nil {
		t.Fatal(err)
	}
	if elapsed, err := roundTrip(listen); err != nil || elapsed > 200*time.Millisecond {
		t.Fatalf("after removing the latency: round trip %s, %v", elapsed, err)
	}
	if err := client.SetEnabled(ctx, name, false); err != nil {
		t.Fatal(err)
	}
	if _, err := roundTrip(listen); err == nil {
		t.Fatal("a disabled link still carried traffic")
	}
	if err := client.SetEnabled(ctx, name, true); err != nil {
		t.Fatal(err)
	}
	if _, err := roundTrip(listen); err != nil {
		t.Fatalf("after enabling again: %v", err)
	}
	link, err := client.Link(ctx, name)
	if err != nil || link.Name != name || !link.Enabled || len(link.Toxics) != 0 {
		t.Fatalf("link state %+v, %v", link, err)
	}
}

func TestConfigRejected(t *testing.T) {
	cases := []struct {
		name   string
		config Config
		want   string
	}{
		{"no links", Config{APIListen: "127.0.0.1:1"}, "no links"},
		{"API not loopback", Config{APIListen: "0.0.0.0:1", Links: []Link{{Name: "a", Listen: "127.0.0.1:2", Upstream: "127.0.0.1:3"}}}, "not a loopback"},
		{"duplicate", Config{APIListen: "127.0.0.1:1", Links: []Link{{Name: "a", Listen: "127.0.0.1:2", Upstream: "127.0.0.1:3"}, {Name: "a", Listen: "127.0.0.1:4", Upstream: "127.0.0.1:3"}}}, "given twice"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := Run(context.Background(), tc.config)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
