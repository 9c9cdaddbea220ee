// Command opamp-go-agent is a test-only OpAMP agent for Fleetbridge's integration tests.
//
// It wraps the real opamp-go client library (WebSocket transport for ws:// and wss://
// endpoints, plain HTTP for http:// and https://) and is driven by the test harness over stdio:
//
//   - stdin:  one JSON command per line, e.g. {"cmd":"health","healthy":false}
//   - stdout: one JSON event per line, e.g. {"event":"connected","client":1}
//   - stderr: human-readable logs only
//
// The process exits by itself when stdin closes (so a crashed test run never leaves it
// behind), on SIGINT/SIGTERM, and after --max-lifetime. See agent.go for the commands and
// events; the harness lives in test/harness/go-agent.ts.
//
// With --restart-on-offer the agent restarts its client on every OpAMP connection settings offer,
// like opamp-go's example agent. With --agents N it runs N agents in one process and reports
// counts instead of per-agent events (scale.go).
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/google/uuid"
)

// kvList is a repeatable k=v flag that keeps the order in which values were given.
type kvList struct {
	items [][2]string
}

func (l *kvList) String() string {
	parts := make([]string, 0, len(l.items))
	for _, kv := range l.items {
		parts = append(parts, kv[0]+"="+kv[1])
	}
	return strings.Join(parts, ",")
}

func (l *kvList) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("expected key=value, got %q", s)
	}
	l.items = append(l.items, [2]string{k, v})
	return nil
}

func main() {
	os.Exit(run())
}

func run() int {
	var (
		endpoint       = flag.String("endpoint", "", "OpAMP URL, e.g. ws://127.0.0.1:4320/v1/opamp (WebSocket) or http://127.0.0.1:4320/v1/opamp (plain HTTP) (required)")
		instanceUID    = flag.String("instance-uid", "", "instance uid as a canonical UUID (default: a new UUIDv7)")
		acceptsRemote  = flag.Bool("accepts-remote-config", true, "advertise AcceptsRemoteConfig")
		reportsHB      = flag.Bool("reports-heartbeat", true, "advertise ReportsHeartbeat")
		acceptsConnSet = flag.Bool("accepts-connection-settings", true, "advertise AcceptsOpAMPConnectionSettings")
		acceptsPkgs    = flag.Bool("accepts-packages", false, "advertise AcceptsPackages and ReportsPackageStatuses and install offered packages (in memory, SHA-256 checked)")
		heartbeatSecs  = flag.Int("heartbeat-seconds", -1, "initial heartbeat interval in seconds (-1: opamp-go default of 30s; 0 disables); the server's ConnectionSettingsOffers.opamp.heartbeat_interval_seconds overrides it")
		maxLifetime    = flag.Duration("max-lifetime", 10*time.Minute, "hard limit after which the process exits")
		verbose        = flag.Bool("verbose", false, "log opamp-go debug messages to stderr")
		caFile         = flag.String("ca-file", "", "PEM CA(s) that verify the server's certificate (wss://); default: the system roots")
		certFile       = flag.String("cert-file", "", "PEM client certificate for mTLS (with --key-file)")
		keyFile        = flag.String("key-file", "", "PEM key of --cert-file")
		restartOnOffer = flag.Bool("restart-on-offer", false, "restart the client on every OpAMP connection settings offer, as opamp-go's example agent does (and advertise ReportsConnectionSettingsStatus)")
		agents         = flag.Int("agents", 0, "scale mode: run this many agents (distinct uids) in this process and report counts (see scale.go)")
		indexAttr      = flag.String("index-attr", "agent.index", "scale mode: the non-identifying attribute that carries each agent's index")
		indexOffset    = flag.Int("index-offset", 0, "scale mode: index of the first agent")
		events         = flag.String("events", "summary", "scale mode: summary (counts only) or all (also every per-agent event, with \"agent\": i)")
		summaryMs      = flag.Int("summary-ms", 200, "scale mode: at most one summary event per this many milliseconds")
		idAttrs, attrs kvList
		headers        kvList
	)
	flag.Var(&idAttrs, "id-attr", "identifying attribute k=v (repeatable; default service.name=test-agent)")
	flag.Var(&attrs, "attr", "non-identifying attribute k=v (repeatable)")
	flag.Var(&headers, "header", "extra HTTP header k=v on the WebSocket upgrade request (repeatable)")
	flag.Parse()

	logger := &stderrLogger{verbose: *verbose}
	if *endpoint == "" {
		fmt.Fprintln(os.Stderr, "opamp-go-agent: --endpoint is required")
		flag.Usage()
		return 2
	}

	var uid uuid.UUID
	var err error
	if *instanceUID != "" {
		uid, err = uuid.Parse(*instanceUID)
		if err != nil {
			fmt.Fprintf(os.Stderr, "opamp-go-agent: bad --instance-uid: %v\n", err)
			return 2
		}
	} else {
		uid, err = uuid.NewV7()
		if err != nil {
			fmt.Fprintf(os.Stderr, "opamp-go-agent: cannot generate a UUIDv7: %v\n", err)
			return 2
		}
	}
	if len(idAttrs.items) == 0 {
		idAttrs.items = [][2]string{{"service.name", "test-agent"}}
	}
	hdr := http.Header{}
	for _, kv := range headers.items {
		hdr.Add(kv[0], kv[1])
	}
	tlsConfig, err := clientTLS(*caFile, *certFile, *keyFile)
	if err != nil {
		fmt.Fprintf(os.Stderr, "opamp-go-agent: %v\n", err)
		return 2
	}
	var heartbeat *time.Duration
	if *heartbeatSecs >= 0 {
		d := time.Duration(*heartbeatSecs) * time.Second
		heartbeat = &d
	}

	if *agents > 0 && *instanceUID != "" {
		fmt.Fprintln(os.Stderr, "opamp-go-agent: --instance-uid and --agents do not go together")
		return 2
	}
	if *events != "summary" && *events != "all" {
		fmt.Fprintln(os.Stderr, "opamp-go-agent: --events must be summary or all")
		return 2
	}

	out := newEmitter(os.Stdout)
	base := agentOptions{
		endpoint:                  *endpoint,
		uid:                       uid,
		idAttrs:                   idAttrs.items,
		attrs:                     attrs.items,
		header:                    hdr,
		acceptsRemoteConfig:       *acceptsRemote,
		reportsHeartbeat:          *reportsHB,
		acceptsConnectionSettings: *acceptsConnSet,
		acceptsPackages:           *acceptsPkgs,
		heartbeat:                 heartbeat,
		tlsConfig:                 tlsConfig,
		restartOnOffer:            *restartOnOffer,
	}

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	lines := make(chan []byte)
	readErr := make(chan error, 1)
	go readLines(os.Stdin, lines, readErr)

	if *agents > 0 {
		if *summaryMs <= 0 {
			*summaryMs = 200
		}
		return runScale(base, scaleOptions{
			count:       *agents,
			indexAttr:   *indexAttr,
			indexOffset: *indexOffset,
			verbose:     *events == "all",
			summaryMs:   *summaryMs,
			maxLifetime: *maxLifetime,
		}, out, logger, lines, readErr, sigs)
	}

	a := newAgent(base, out, logger)
	if err := a.start(); err != nil {
		out.emit("start_failed", map[string]any{"error": err.Error()})
		logger.Errorf(context.Background(), "start failed: %v", err)
		return 1
	}
	out.emit("started", map[string]any{"instanceUid": uid.String()})

	// Hard lifetime limit: the last line of defence against leaked processes.
	time.AfterFunc(*maxLifetime, func() {
		logger.Errorf(context.Background(), "--max-lifetime %s reached, exiting", *maxLifetime)
		a.shutdown(2 * time.Second)
		os.Exit(3)
	})

	for {
		select {
		case line := <-lines:
			if done := a.handleLine(line); done {
				return 0
			}
		case err := <-readErr:
			if err != nil && !errors.Is(err, io.EOF) {
				logger.Errorf(context.Background(), "reading stdin: %v", err)
			}
			// stdin closed: the driver is gone (or asked us to stop). Leave politely.
			a.shutdown(3 * time.Second)
			return 0
		case s := <-sigs:
			logger.Errorf(context.Background(), "received %s, stopping", s)
			a.shutdown(3 * time.Second)
			return 0
		}
	}
}

// For scale.go.
type osSignal = os.Signal

var osExit = os.Exit

// clientTLS builds the TLS config from the --ca-file, --cert-file and --key-file flags, or returns
// nil when none is given (plain ws://, or wss:// verified against the system roots).
func clientTLS(caFile, certFile, keyFile string) (*tls.Config, error) {
	if caFile == "" && certFile == "" && keyFile == "" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("--ca-file: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--ca-file %s holds no PEM certificate", caFile)
		}
	}
	if (certFile == "") != (keyFile == "") {
		return nil, errors.New("--cert-file and --key-file go together")
	}
	if certFile != "" {
		pair, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("--cert-file/--key-file: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

// readLines sends each non-empty stdin line to lines and then the terminal error (nil on EOF).
func readLines(r io.Reader, lines chan<- []byte, readErr chan<- error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 64*1024*1024)
	for sc.Scan() {
		line := append([]byte(nil), sc.Bytes()...)
		if len(strings.TrimSpace(string(line))) == 0 {
			continue
		}
		lines <- line
	}
	readErr <- sc.Err()
}

// emitter writes one JSON object per line to stdout. Safe for concurrent use.
type emitter struct {
	mu sync.Mutex
	w  io.Writer
}

func newEmitter(w io.Writer) *emitter {
	return &emitter{w: w}
}

// emit writes {"event": event, ...fields} as one line.
func (e *emitter) emit(event string, fields map[string]any) {
	obj := make(map[string]any, len(fields)+1)
	for k, v := range fields {
		obj[k] = v
	}
	obj["event"] = event
	b, err := json.Marshal(obj)
	if err != nil {
		b, _ = json.Marshal(map[string]any{"event": "error", "error": "cannot encode event " + event + ": " + err.Error()})
	}
	b = append(b, '\n')
	e.mu.Lock()
	defer e.mu.Unlock()
	_, _ = e.w.Write(b)
}

// stderrLogger implements opamp-go's client/types.Logger.
type stderrLogger struct {
	verbose bool
}

func (l *stderrLogger) Debugf(_ context.Context, format string, v ...any) {
	if l.verbose {
		fmt.Fprintf(os.Stderr, "%s DEBUG "+format+"\n", append([]any{time.Now().Format(time.RFC3339Nano)}, v...)...)
	}
}

func (l *stderrLogger) Errorf(_ context.Context, format string, v ...any) {
	fmt.Fprintf(os.Stderr, "%s ERROR "+format+"\n", append([]any{time.Now().Format(time.RFC3339Nano)}, v...)...)
}
