package stack

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Probe kinds: how readiness of a component is checked.
const (
	// ProbePostgres connects to Target (a postgres:// URL) and runs SELECT 1.
	ProbePostgres = "postgres"
	// ProbeRedis sends PING to Target (host:port) and expects +PONG.
	ProbeRedis = "redis"
	// ProbeKafka sends a Kafka ApiVersions request to Target (host:port) and
	// expects a response with the same correlation id.
	ProbeKafka = "kafka"
	// ProbeHTTP sends GET to Target (a URL) and expects status 200.
	ProbeHTTP = "http"
)

// Probe says how to tell that a component is ready to serve.
type Probe struct {
	Kind   string `json:"kind"`
	Target string `json:"target"`
}

// probeAttemptTimeout bounds one readiness attempt.
const probeAttemptTimeout = 2 * time.Second

// Check runs one readiness attempt.
func (p Probe) Check(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, probeAttemptTimeout)
	defer cancel()
	switch p.Kind {
	case ProbePostgres:
		return checkPostgres(ctx, p.Target)
	case ProbeRedis:
		return checkRedis(ctx, p.Target)
	case ProbeKafka:
		return checkKafka(ctx, p.Target)
	case ProbeHTTP:
		return checkHTTP(ctx, p.Target)
	case "":
		return nil
	default:
		return fmt.Errorf("unknown probe kind %q", p.Kind)
	}
}

// WaitReady polls the probe until it succeeds or ctx ends. If exited is not
// nil and gets closed (the process died), it stops at once.
func (p Probe) WaitReady(ctx context.Context, exited <-chan struct{}) error {
	ticker := time.NewTicker(50 * time.Millisecond)
	defer ticker.Stop()
	for {
		err := p.Check(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not ready (%s %s): %w; last error: %v", p.Kind, p.Target, ctx.Err(), err)
		case <-exited:
			return fmt.Errorf("process exited before it was ready (%s %s); last error: %v", p.Kind, p.Target, err)
		case <-ticker.C:
		}
	}
}

func checkPostgres(ctx context.Context, url string) error {
	connection, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer connection.Close(context.Background())
	var one int
	return connection.QueryRow(ctx, "SELECT 1").Scan(&one)
}

func dialWithDeadline(ctx context.Context, address string) (net.Conn, error) {
	var dialer net.Dialer
	connection, err := dialer.DialContext(ctx, "tcp", address)
	if err != nil {
		return nil, err
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(probeAttemptTimeout)
	}
	_ = connection.SetDeadline(deadline)
	return connection, nil
}

func checkRedis(ctx context.Context, address string) error {
	connection, err := dialWithDeadline(ctx, address)
	if err != nil {
		return err
	}
	defer connection.Close()
	if _, err := io.WriteString(connection, "*1\r\n$4\r\nPING\r\n"); err != nil {
		return err
	}
	line, err := bufio.NewReader(connection).ReadString('\n')
	if err != nil {
		return err
	}
	if strings.TrimSpace(line) != "+PONG" {
		return fmt.Errorf("redis PING answered %q", strings.TrimSpace(line))
	}
	return nil
}

// checkKafka sends ApiVersions v0 (api key 18), which every Kafka broker
// answers before any authentication, and checks the response's correlation
// id.
func checkKafka(ctx context.Context, address string) error {
	connection, err := dialWithDeadline(ctx, address)
	if err != nil {
		return err
	}
	defer connection.Close()
	const correlationID = 0x4c50 // "LP"
	clientID := "ledgerproof-probe"
	body := make([]byte, 0, 32)
	body = binary.BigEndian.AppendUint16(body, 18) // api key: ApiVersions
	body = binary.BigEndian.AppendUint16(body, 0)  // api version 0
	body = binary.BigEndian.AppendUint32(body, correlationID)
	body = binary.BigEndian.AppendUint16(body, uint16(len(clientID)))
	body = append(body, clientID...)
	request := binary.BigEndian.AppendUint32(nil, uint32(len(body)))
	request = append(request, body...)
	if _, err := connection.Write(request); err != nil {
		return err
	}
	header := make([]byte, 8)
	if _, err := io.ReadFull(connection, header); err != nil {
		return fmt.Errorf("read ApiVersions response: %w", err)
	}
	size := binary.BigEndian.Uint32(header[:4])
	if size < 4 || size > 1<<20 {
		return fmt.Errorf("ApiVersions response of %d bytes", size)
	}
	if got := binary.BigEndian.Uint32(header[4:]); got != correlationID {
		return fmt.Errorf("ApiVersions response with correlation id %d, want %d", got, correlationID)
	}
	return nil
}

var probeHTTPClient = &http.Client{Timeout: probeAttemptTimeout}

func checkHTTP(ctx context.Context, url string) error {
	request, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	response, err := probeHTTPClient.Do(request)
	if err != nil {
		return err
	}
	defer response.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(response.Body, 64<<10))
	if response.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: status %d", url, response.StatusCode)
	}
	return nil
}
