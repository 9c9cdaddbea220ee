// Command opamp-go-server is the opamp-go peer of Fleetbridge's side-by-side fleet benchmark
// (issue 8): an OpAMP server built on github.com/open-telemetry/opamp-go's server package that does
// the same per-agent work as Fleetbridge for a fleet, with one desired config for every agent.
//
//	opamp-go-server -listen 127.0.0.1:4320 -admin 127.0.0.1:4321 [-path /v1/opamp] [-heartbeat-seconds 30] [-config FILE]
//
// OpAMP (WebSocket and plain HTTP POST) on -listen at -path. For every AgentToServer it updates the
// agent's record (instance uid, description, capabilities, sequence number, last remote config
// status, health, effective config) in one map under one mutex and answers it; the answer carries
// the desired remote config (AgentConfigMap with one entry "" of text/yaml, config_hash = sha256 of
// the body) when the agent accepts remote config and does not report that hash. It asks for full
// state on a sequence gap or an unknown agent, honours RequestInstanceUid and AgentDisconnect, and
// closes an older WebSocket of an agent that connects again (as Fleetbridge does).
//
// Admin API on -admin: GET /readyz; PUT /config (the body becomes the desired config and is pushed
// at once to every connected WebSocket agent that lacks it; HTTP agents get it in the answer to
// their next poll); GET /stats -> {"agents","connected","applied","configHash"}. -heartbeat-seconds
// only decides when a silent HTTP agent stops counting as connected (3 heartbeats + 10 s, as
// Fleetbridge); the server offers no connection settings.
//
// Logging: warnings only, on stderr, at most 10 lines per 10 s (the rest are counted).
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/open-telemetry/opamp-go/protobufs"
	"github.com/open-telemetry/opamp-go/server"
	"github.com/open-telemetry/opamp-go/server/types"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

const version = "opamp-go-server 0.1.0 (opamp-go v0.23.0)"

const (
	serverCapabilities = uint64(protobufs.ServerCapabilities_ServerCapabilities_AcceptsStatus |
		protobufs.ServerCapabilities_ServerCapabilities_OffersRemoteConfig |
		protobufs.ServerCapabilities_ServerCapabilities_AcceptsEffectiveConfig)
	acceptsRemoteConfig = uint64(protobufs.AgentCapabilities_AgentCapabilities_AcceptsRemoteConfig)
	requestInstanceUID  = uint64(protobufs.AgentToServerFlags_AgentToServerFlags_RequestInstanceUid)
	reportFullState     = uint64(protobufs.ServerToAgentFlags_ServerToAgentFlags_ReportFullState)

	// Same limits as Fleetbridge: 16 MiB per message, a config offer is repeated on the same
	// connection at most once a minute.
	maxMessageBytes = 16 << 20
	maxConfigBytes  = 16 << 20
	offerRetry      = 60 * time.Second
	pushWorkers     = 64
)

// remoteConfigField is the field number of ServerToAgent.remote_config.
var remoteConfigField = (&protobufs.ServerToAgent{}).ProtoReflect().Descriptor().Fields().ByName("remote_config").Number()

// desiredConfig is one distinct desired config, encoded once.
type desiredConfig struct {
	hashHex string
	// field is ServerToAgent.remote_config already in wire form (tag, length, AgentRemoteConfig).
	// Connection.Send takes a message and marshals it for each connection, so the config goes in
	// as the message's unknown fields, which proto.Marshal copies out verbatim: the AgentRemoteConfig
	// (the bulk of the bytes) is encoded once per config, not once per agent.
	field protoreflect.RawFields
}

func newDesiredConfig(body []byte) (*desiredConfig, error) {
	sum := sha256.Sum256(body)
	rc := &protobufs.AgentRemoteConfig{
		Config: &protobufs.AgentConfigMap{ConfigMap: map[string]*protobufs.AgentConfigFile{
			"": {Body: body, ContentType: "text/yaml"},
		}},
		ConfigHash: sum[:],
	}
	enc, err := proto.Marshal(rc)
	if err != nil {
		return nil, err
	}
	field := protowire.AppendTag(nil, remoteConfigField, protowire.BytesType)
	field = protowire.AppendBytes(field, enc)
	return &desiredConfig{hashHex: hex.EncodeToString(sum[:]), field: field[:len(field):len(field)]}, nil
}

// attachTo attaches the encoded config to msg.
func (d *desiredConfig) attachTo(msg *protobufs.ServerToAgent) {
	msg.ProtoReflect().SetUnknown(d.field)
}

type agentRecord struct {
	uid          [16]byte
	description  *protobufs.AgentDescription
	capabilities uint64
	lastSeq      uint64
	seqKnown     bool
	health       *protobufs.ComponentHealth
	effective    *protobufs.EffectiveConfig
	status       *protobufs.RemoteConfigStatus // the last one reported
	reportedHash string                        // hex of status.last_remote_config_hash
	failedHash   string                        // desired hash the agent reported FAILED: not offered again

	ws        bool
	connected bool
	conn      types.Connection // the agent's open WebSocket; nil otherwise
	connID    uint64           // id of conn; 0 for HTTP
	lastSeen  time.Time

	offeredHash string
	offeredConn uint64 // connection id the offer went to (0: HTTP)
	offeredAt   time.Time
}

// wsConn is what the server keeps per open WebSocket.
type wsConn struct {
	id     uint64
	agents []*agentRecord // agents last seen on it (normally one)
}

type fleet struct {
	mu           sync.Mutex
	agents       map[[16]byte]*agentRecord
	conns        map[types.Connection]*wsConn
	desired      atomic.Pointer[desiredConfig] // written under mu
	nextConnID   uint64
	offlineAfter time.Duration

	pushMu sync.Mutex // one push at a time, so an older config never overtakes a newer one
	warn   *warnLog
}

func newFleet(heartbeat time.Duration, warn *warnLog) *fleet {
	return &fleet{
		agents:       make(map[[16]byte]*agentRecord),
		conns:        make(map[types.Connection]*wsConn),
		offlineAfter: 3*heartbeat + 10*time.Second,
		warn:         warn,
	}
}

func (f *fleet) callbacks(ws bool) types.ConnectionCallbacks {
	cb := types.ConnectionCallbacks{
		OnMessage: func(_ context.Context, conn types.Connection, msg *protobufs.AgentToServer) *protobufs.ServerToAgent {
			return f.onMessage(conn, ws, msg)
		},
		// opamp-go itself logs read, decode and send errors (see opampLogger); nothing to add.
		OnReadMessageError:     func(types.Connection, int, []byte, error) {},
		OnMessageResponseError: func(types.Connection, *protobufs.ServerToAgent, error) {},
	}
	if ws {
		cb.OnConnected = func(_ context.Context, conn types.Connection) {
			f.mu.Lock()
			f.nextConnID++
			f.conns[conn] = &wsConn{id: f.nextConnID}
			f.mu.Unlock()
		}
		cb.OnConnectionClose = func(conn types.Connection) {
			f.mu.Lock()
			if c := f.conns[conn]; c != nil {
				for _, rec := range c.agents {
					if rec.conn == conn {
						rec.connected, rec.conn, rec.connID = false, nil, 0
					}
				}
				delete(f.conns, conn)
			}
			f.mu.Unlock()
		}
	}
	// Plain HTTP: opamp-go calls OnConnected and OnConnectionClose around every single request;
	// an HTTP agent is connected while it keeps polling (see stats).
	return cb
}

func (f *fleet) onMessage(conn types.Connection, ws bool, msg *protobufs.AgentToServer) *protobufs.ServerToAgent {
	if len(msg.InstanceUid) != 16 {
		f.warn.Printf("refused a message with an instance_uid of %d bytes", len(msg.InstanceUid))
		return &protobufs.ServerToAgent{
			InstanceUid: msg.InstanceUid,
			ErrorResponse: &protobufs.ServerErrorResponse{
				Type:         protobufs.ServerErrorResponseType_ServerErrorResponseType_BadRequest,
				ErrorMessage: fmt.Sprintf("instance_uid must be 16 bytes, got %d", len(msg.InstanceUid)),
			},
		}
	}
	var uid [16]byte
	copy(uid[:], msg.InstanceUid)
	now := time.Now()
	resp := &protobufs.ServerToAgent{InstanceUid: msg.InstanceUid, Capabilities: serverCapabilities}
	var replaced types.Connection

	f.mu.Lock()
	var c *wsConn
	if ws {
		c = f.conns[conn]
	}
	rec := f.agents[uid]
	fullState := false
	if rec == nil {
		rec = &agentRecord{uid: uid}
		f.agents[uid] = rec
		// A server with no state for the agent asks for full state, unless this is plainly a fresh
		// agent's first, complete report.
		fullState = !(msg.SequenceNum == 0 && msg.AgentDescription != nil)
	} else {
		if rec.connected && rec.conn != nil && rec.conn != conn && msg.Flags&requestInstanceUID == 0 {
			// Two live connections claim one instance_uid: the newest wins.
			replaced = rec.conn
			f.detachLocked(rec)
		}
		fullState = !rec.seqKnown || msg.SequenceNum != rec.lastSeq+1
	}
	rec.lastSeq, rec.seqKnown = msg.SequenceNum, true
	rec.lastSeen = now
	rec.capabilities = msg.Capabilities
	rec.ws = ws
	rec.connected = true
	if c != nil && rec.conn != conn {
		c.agents = append(c.agents, rec)
	}
	if c != nil {
		rec.conn, rec.connID = conn, c.id
	} else {
		rec.conn, rec.connID = nil, 0
	}
	if msg.AgentDescription != nil {
		rec.description = msg.AgentDescription
	}
	if msg.Health != nil {
		rec.health = msg.Health
	}
	if msg.EffectiveConfig != nil {
		rec.effective = msg.EffectiveConfig
	}
	if st := msg.RemoteConfigStatus; st != nil {
		f.recordStatusLocked(rec, st)
	}
	if msg.Flags&requestInstanceUID != 0 {
		if fresh, err := uuid.NewV7(); err == nil {
			delete(f.agents, uid)
			rec.uid = fresh
			f.agents[fresh] = rec
			resp.AgentIdentification = &protobufs.AgentIdentification{NewInstanceUid: fresh[:]}
		}
	}
	if msg.AgentDisconnect != nil {
		f.detachLocked(rec)
		rec.connected = false
	} else {
		if fullState {
			resp.Flags = reportFullState
		}
		// After asking for full state, wait for the agent's config status before offering config,
		// so an agent that already runs the desired config is not sent it again.
		if msg.RemoteConfigStatus != nil || !fullState {
			if d := f.desired.Load(); d != nil && f.offerLocked(rec, d, now) {
				d.attachTo(resp)
			}
		}
	}
	f.mu.Unlock()

	if replaced != nil {
		_ = replaced.Disconnect()
	}
	return resp
}

// detachLocked forgets the agent's WebSocket (the connection itself stays open).
func (f *fleet) detachLocked(rec *agentRecord) {
	if rec.conn == nil {
		return
	}
	if c := f.conns[rec.conn]; c != nil {
		for i, r := range c.agents {
			if r == rec {
				c.agents = append(c.agents[:i], c.agents[i+1:]...)
				break
			}
		}
	}
	rec.conn, rec.connID = nil, 0
}

func (f *fleet) recordStatusLocked(rec *agentRecord, st *protobufs.RemoteConfigStatus) {
	rec.status = st
	rec.reportedHash = hex.EncodeToString(st.LastRemoteConfigHash)
	if rec.offeredHash != "" && rec.reportedHash != rec.offeredHash {
		// The agent has acted on some other config since the offer (e.g. an older answer that was
		// still on its way): the offer may be offered again at once.
		rec.offeredHash = ""
	}
	if st.Status == protobufs.RemoteConfigStatuses_RemoteConfigStatuses_FAILED && rec.reportedHash != "" {
		if d := f.desired.Load(); d != nil && d.hashHex == rec.reportedHash && rec.failedHash != rec.reportedHash {
			rec.failedHash = rec.reportedHash
			f.warn.Printf("agent %x failed to apply config %s: %s", rec.uid, rec.reportedHash, st.ErrorMessage)
		}
	}
}

// offerLocked says whether the agent should be sent d now, and records the offer if so.
func (f *fleet) offerLocked(rec *agentRecord, d *desiredConfig, now time.Time) bool {
	if rec.capabilities&acceptsRemoteConfig == 0 || rec.reportedHash == d.hashHex || rec.failedHash == d.hashHex {
		return false
	}
	if rec.offeredHash == d.hashHex && rec.offeredConn == rec.connID && now.Sub(rec.offeredAt) < offerRetry {
		return false
	}
	rec.offeredHash, rec.offeredConn, rec.offeredAt = d.hashHex, rec.connID, now
	return true
}

type pushTarget struct {
	conn types.Connection
	msg  *protobufs.ServerToAgent
}

// setDesired makes body the desired config and pushes it to every connected WebSocket agent that
// lacks it. Returns the config's hash and how many agents it is being pushed to.
func (f *fleet) setDesired(body []byte) (string, int, error) {
	d, err := newDesiredConfig(body)
	if err != nil {
		return "", 0, err
	}
	now := time.Now()
	f.mu.Lock()
	if cur := f.desired.Load(); cur != nil && cur.hashHex == d.hashHex {
		f.mu.Unlock()
		return d.hashHex, 0, nil
	}
	f.desired.Store(d)
	targets := make([]pushTarget, 0, len(f.conns))
	for conn, c := range f.conns {
		for _, rec := range c.agents {
			if rec.conn != conn || !rec.connected || !f.offerLocked(rec, d, now) {
				continue
			}
			uid := rec.uid // a copy: the record's uid may change while the message is being sent
			msg := &protobufs.ServerToAgent{InstanceUid: uid[:], Capabilities: serverCapabilities}
			d.attachTo(msg)
			targets = append(targets, pushTarget{conn, msg})
		}
	}
	f.mu.Unlock()
	go f.push(d, targets)
	return d.hashHex, len(targets), nil
}

func (f *fleet) push(d *desiredConfig, targets []pushTarget) {
	f.pushMu.Lock()
	defer f.pushMu.Unlock()
	// opamp-go's Send blocks until the frame is written (no write deadline), so a few workers keep
	// one slow reader from holding up the rest.
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < min(pushWorkers, len(targets)); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(targets) || f.desired.Load() != d {
					return // done, or superseded: the newer push covers these agents
				}
				t := targets[i]
				if err := t.conn.Send(context.Background(), t.msg); err != nil {
					f.warn.Printf("cannot push config to an agent: %v", err)
					_ = t.conn.Disconnect()
				}
			}
		}()
	}
	wg.Wait()
}

type stats struct {
	Agents     int    `json:"agents"`
	Connected  int    `json:"connected"`
	Applied    int    `json:"applied"`
	ConfigHash string `json:"configHash"`
}

func (f *fleet) stats() stats {
	now := time.Now()
	f.mu.Lock()
	defer f.mu.Unlock()
	s := stats{Agents: len(f.agents)}
	d := f.desired.Load()
	if d != nil {
		s.ConfigHash = d.hashHex
	}
	for _, rec := range f.agents {
		if rec.connected && (rec.ws || now.Sub(rec.lastSeen) <= f.offlineAfter) {
			s.Connected++
		}
		if d != nil && rec.status != nil && rec.reportedHash == d.hashHex &&
			rec.status.Status == protobufs.RemoteConfigStatuses_RemoteConfigStatuses_APPLIED {
			s.Applied++
		}
	}
	return s
}

// warnLog writes warnings to stderr, at most 10 lines per 10 s; the rest are counted and the
// count is written with the next line that gets through.
type warnLog struct {
	mu         sync.Mutex
	out        *log.Logger
	window     time.Time
	lines      int
	suppressed int
}

func (l *warnLog) Printf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if now.Sub(l.window) > 10*time.Second {
		if l.suppressed > 0 {
			l.out.Printf("warning: %d more warnings were not logged", l.suppressed)
		}
		l.window, l.lines, l.suppressed = now, 0, 0
	}
	if l.lines >= 10 {
		l.suppressed++
		return
	}
	l.lines++
	l.out.Printf("warning: "+format, args...)
}

// Write lets net/http's ErrorLog go through the same limiter.
func (l *warnLog) Write(p []byte) (int, error) {
	l.Printf("%s", trimNewline(p))
	return len(p), nil
}

func trimNewline(p []byte) []byte {
	for len(p) > 0 && (p[len(p)-1] == '\n' || p[len(p)-1] == '\r') {
		p = p[:len(p)-1]
	}
	return p
}

// opampLogger adapts the warning log to opamp-go's Logger: its debug lines are dropped.
type opampLogger struct{ warn *warnLog }

func (l opampLogger) Debugf(context.Context, string, ...any) {}
func (l opampLogger) Errorf(_ context.Context, format string, args ...any) {
	// opamp-go logs every WebSocket that ends without a close frame (gorilla reports it as close
	// 1006) as an error: an agent going away is not worth a warning.
	if strings.HasPrefix(format, "Cannot read a message from WebSocket") {
		return
	}
	l.warn.Printf("opamp-go: "+format, args...)
}

func main() {
	var (
		listen       = flag.String("listen", "127.0.0.1:4320", "OpAMP listen address (WebSocket and plain HTTP)")
		path         = flag.String("path", "/v1/opamp", "OpAMP URL path")
		admin        = flag.String("admin", "127.0.0.1:4321", "admin API listen address (GET /readyz, PUT /config, GET /stats)")
		heartbeatSec = flag.Int("heartbeat-seconds", 30, "agents' heartbeat interval; an HTTP agent silent for 3 of them + 10 s no longer counts as connected (no connection settings are offered)")
		configFile   = flag.String("config", "", "optional file whose content is the initial desired config")
		showVersion  = flag.Bool("version", false, "print the version and exit")
	)
	flag.Parse()
	if *showVersion {
		fmt.Printf("%s, %s\n", version, runtime.Version())
		return
	}
	if flag.NArg() > 0 || *heartbeatSec < 1 {
		flag.Usage()
		os.Exit(2)
	}
	warn := &warnLog{out: log.New(os.Stderr, "opamp-go-server ", log.LstdFlags|log.Lmicroseconds)}
	f := newFleet(time.Duration(*heartbeatSec)*time.Second, warn)
	if *configFile != "" {
		body, err := os.ReadFile(*configFile)
		if err == nil {
			_, _, err = f.setDesired(body)
		}
		if err != nil {
			log.Fatalf("opamp-go-server: %v", err)
		}
	}

	// Attach rather than Start: Start's http.Server has no timeouts and no limits of its own.
	wsCallbacks, httpCallbacks := f.callbacks(true), f.callbacks(false)
	opampSrv := server.New(opampLogger{warn})
	handler, connContext, err := opampSrv.Attach(server.Settings{
		Callbacks: types.Callbacks{
			OnConnecting: func(r *http.Request) types.ConnectionResponse {
				// The same test opamp-go makes to choose between plain HTTP and a WebSocket upgrade.
				if r.Header.Get("Content-Type") == "application/x-protobuf" {
					return types.ConnectionResponse{Accept: true, ConnectionCallbacks: httpCallbacks}
				}
				return types.ConnectionResponse{Accept: true, ConnectionCallbacks: wsCallbacks}
			},
		},
	})
	if err != nil {
		log.Fatalf("opamp-go-server: %v", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc(*path, func(w http.ResponseWriter, r *http.Request) {
		// opamp-go reads a plain HTTP body without a limit.
		r.Body = http.MaxBytesReader(w, r.Body, maxMessageBytes)
		handler(w, r)
	})
	opampHTTP := &http.Server{
		Handler:     mux,
		ConnContext: connContext, // required: opamp-go finds a plain HTTP request's net.Conn through it
		// Only the header deadline: net/http clears it once the headers are read, so it does not
		// linger on hijacked WebSocket connections (a ReadTimeout would).
		ReadHeaderTimeout: 30 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          log.New(warn, "", 0),
	}
	opampLn, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatalf("opamp-go-server: %v", err)
	}

	adminMux := http.NewServeMux()
	adminMux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok\n")
	})
	adminMux.HandleFunc("GET /stats", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(f.stats())
	})
	adminMux.HandleFunc("PUT /config", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxConfigBytes))
		if err != nil {
			http.Error(w, err.Error(), http.StatusRequestEntityTooLarge)
			return
		}
		if len(body) == 0 {
			http.Error(w, "empty config", http.StatusBadRequest)
			return
		}
		hash, pushed, err := f.setDesired(body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"configHash": hash, "pushing": pushed})
	})
	adminHTTP := &http.Server{Handler: adminMux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: log.New(warn, "", 0)}
	adminLn, err := net.Listen("tcp", *admin)
	if err != nil {
		log.Fatalf("opamp-go-server: %v", err)
	}

	go func() {
		if err := opampHTTP.Serve(opampLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Fatalf("opamp-go-server: OpAMP listener: %v", err)
		}
	}()
	go func() {
		if err := adminHTTP.Serve(adminLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Fatalf("opamp-go-server: admin listener: %v", err)
		}
	}()

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	// Hijacked WebSockets are not closed by Shutdown (nor by opamp-go's Stop); exiting closes them.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = adminHTTP.Shutdown(ctx)
	_ = opampHTTP.Shutdown(ctx)
}
