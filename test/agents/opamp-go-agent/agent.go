package main

// Commands (stdin, one JSON object per line). Every command is answered with
// {"event":"ack","cmd":"<name>","ok":true} once it is done, or ok:false plus "error".
//
//	{"cmd":"mode","remoteConfig":"apply"|"fail"|"ignore","error":"text","applyDelayMs":N}
//	    How to answer the remote configs received from now on (default apply):
//	      apply  → RemoteConfigStatus APPLYING, then the effective config becomes the received
//	               config map and is reported, then APPLIED; both with the received hash.
//	               applyDelayMs (default 100) is the time spent "applying" between the two, so
//	               the APPLYING report normally goes out in its own message (opamp-go coalesces
//	               status changes that are queued before its sender runs).
//	      fail   → FAILED with the received hash and "error" as error_message.
//	      ignore → no status at all.
//	{"cmd":"health","healthy":bool,"status":"...","lastError":"...","components":{"name":{...same shape...}}}
//	{"cmd":"effective_config","body":"yaml text","contentType":"text/yaml"}   (the "" entry)
//	{"cmd":"description","attrs":{"k":"v"}}   replaces the non-identifying attributes
//	{"cmd":"restart"}      Stop the client and start a new one with the same instance uid.
//	{"cmd":"disconnect"}   Stop the client (opamp-go sends agent_disconnect), then exit 0.
//
// About sequence gaps: opamp-go v0.23.0 has no public way to make a gap on a live
// connection. sequence_num lives in the internal NextMessage (client/internal/nextmessage.go,
// PopPending increments it for every message it hands to the sender) and every popped
// message is written (it is never empty: it always carries instance_uid), so the only gaps
// opamp-go itself produces are messages lost on a connection that is breaking, which a test
// cannot trigger on purpose. "restart" is therefore how tests produce a sequence reset: the
// new client's first message has sequence_num 0 after the previous client's N > 0.
//
// Events (stdout, one JSON object per line; "client" is the 1-based generation of the opamp-go
// client that produced the event, it increases with every restart):
//
//	started {instanceUid, capabilities}           process is up and the first client was started
//	connected {client}                            OnConnect
//	connect_failed {client, error}                OnConnectFailed
//	remote_config {client, hash, body, keys, contentType}  OnMessage with a RemoteConfig
//	                                              (body: the "" entry as text, null when absent)
//	config_status_sent {status, hash, errorMessage}  after SetRemoteConfigStatus accepted it
//	                                              (queued in opamp-go; it is sent right after)
//	config_ignored {hash}                         mode ignore swallowed a remote config
//	connection_settings {client, heartbeatIntervalSeconds, endpoint, authorization, authorizationChanged, restarting}
//	                                              OnOpampConnectionSettings; a changed Authorization
//	                                              header makes the agent reconnect with it (new client),
//	                                              and with --restart-on-offer every offer does
//	restarting {client, reason}                   the agent stops client N to start client N+1
//	full_state_requested {client}                 the server set ReportFullState (inferred, see
//	                                              getEffectiveConfig below)
//	instance_uid_changed {client, instanceUid}    the server sent AgentIdentification
//	error {client, error, type}                   OnError (ServerErrorResponse) or a local failure
//	stopped {client}                              a client's Stop() returned
//	ack {cmd, ok, error?}

import (
	"context"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/open-telemetry/opamp-go/client"
	"github.com/open-telemetry/opamp-go/client/types"
	"github.com/open-telemetry/opamp-go/protobufs"
	"google.golang.org/protobuf/proto"
)

type agentOptions struct {
	endpoint                  string // ws(s):// → opamp-go's WebSocket client, http(s):// → its plain-HTTP (polling) client
	uid                       uuid.UUID
	idAttrs                   [][2]string
	attrs                     [][2]string
	header                    http.Header
	acceptsRemoteConfig       bool
	reportsHeartbeat          bool
	acceptsConnectionSettings bool
	acceptsPackages           bool
	heartbeat                 *time.Duration
	tlsConfig                 *tls.Config // nil: plain ws:// (opamp-go switches the scheme to wss when set)
	// restartOnOffer mirrors opamp-go's example agent (internal/examples/agent/agent/agent.go,
	// onOpampConnectionSettings → go tryChangeOpAMP): every OpAMP connection settings offer is
	// accepted by stopping the client (agent_disconnect) and starting a new one with the same
	// instance uid and the last remote config status, whose first message is a full state report.
	// Like that example, the agent then also advertises ReportsConnectionSettingsStatus.
	restartOnOffer bool
}

type pendingConfig struct {
	rc         *protobufs.AgentRemoteConfig
	mode       string
	errText    string
	applyDelay time.Duration
}

type agent struct {
	opts      agentOptions
	out       eventSink
	packages  *memPackages
	log       types.Logger
	startedAt time.Time
	configs   chan pendingConfig

	mu                sync.Mutex
	client            client.OpAMPClient
	gen               int
	uid               types.InstanceUid
	identifying       []*protobufs.KeyValue
	nonIdentifying    []*protobufs.KeyValue
	health            *protobufs.ComponentHealth
	effective         *protobufs.AgentConfigMap // nil until something is applied or set
	lastStatus        *protobufs.RemoteConfigStatus
	mode              string
	modeError         string
	applyDelay        time.Duration
	firstMessagePend  bool // the current client has not yet built its first message
	effectiveUpdaters int  // our own UpdateEffectiveConfig calls in progress
}

func newAgent(opts agentOptions, out eventSink, log types.Logger) *agent {
	now := time.Now()
	a := &agent{
		opts:           opts,
		out:            out,
		log:            log,
		startedAt:      now,
		configs:        make(chan pendingConfig, 64),
		uid:            types.InstanceUid(opts.uid),
		identifying:    stringKVs(opts.idAttrs),
		nonIdentifying: stringKVs(opts.attrs),
		mode:           "apply",
		packages:       newMemPackages(out),
		applyDelay:     100 * time.Millisecond,
		health: &protobufs.ComponentHealth{
			Healthy:            true,
			Status:             "StatusOK",
			StartTimeUnixNano:  uint64(now.UnixNano()),
			StatusTimeUnixNano: uint64(now.UnixNano()),
		},
	}
	go a.configWorker()
	return a
}

func (a *agent) capabilities() protobufs.AgentCapabilities {
	c := protobufs.AgentCapabilities_AgentCapabilities_ReportsStatus |
		protobufs.AgentCapabilities_AgentCapabilities_ReportsRemoteConfig |
		protobufs.AgentCapabilities_AgentCapabilities_ReportsEffectiveConfig |
		protobufs.AgentCapabilities_AgentCapabilities_ReportsHealth
	if a.opts.acceptsRemoteConfig {
		c |= protobufs.AgentCapabilities_AgentCapabilities_AcceptsRemoteConfig
	}
	if a.opts.reportsHeartbeat {
		c |= protobufs.AgentCapabilities_AgentCapabilities_ReportsHeartbeat
	}
	if a.opts.acceptsConnectionSettings {
		c |= protobufs.AgentCapabilities_AgentCapabilities_AcceptsOpAMPConnectionSettings
		if a.opts.restartOnOffer {
			c |= protobufs.AgentCapabilities_AgentCapabilities_ReportsConnectionSettingsStatus
		}
	}
	if a.opts.acceptsPackages {
		c |= protobufs.AgentCapabilities_AgentCapabilities_AcceptsPackages |
			protobufs.AgentCapabilities_AgentCapabilities_ReportsPackageStatuses
	}
	return c
}

func (a *agent) descriptionLocked() *protobufs.AgentDescription {
	return &protobufs.AgentDescription{
		IdentifyingAttributes:    cloneKVs(a.identifying),
		NonIdentifyingAttributes: cloneKVs(a.nonIdentifying),
	}
}

func (a *agent) current() client.OpAMPClient {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.client
}

// isHTTPEndpoint tells whether the endpoint selects opamp-go's plain-HTTP client (http:// or
// https://) rather than its WebSocket client (ws:// or wss://), as opamp-go's example agent does.
func isHTTPEndpoint(endpoint string) bool {
	e := strings.ToLower(endpoint)
	return strings.HasPrefix(e, "http://") || strings.HasPrefix(e, "https://")
}

// start creates and starts a new opamp-go client (a new "generation") carrying the agent's
// current state: description, health, last remote config status, instance uid. The transport
// follows the endpoint's scheme.
func (a *agent) start() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.client != nil {
		return errors.New("a client is already running")
	}
	a.gen++
	gen := a.gen
	var c client.OpAMPClient
	if isHTTPEndpoint(a.opts.endpoint) {
		c = client.NewHTTP(a.log)
	} else {
		c = client.NewWebSocket(a.log)
	}

	// Order matters: SetCapabilities validates that health is already set when ReportsHealth
	// is requested (client/internal/clientcommon.go validateCapabilities), and Start requires
	// the description (PrepareStart).
	if err := c.SetAgentDescription(a.descriptionLocked()); err != nil {
		return fmt.Errorf("SetAgentDescription: %w", err)
	}
	if err := c.SetHealth(proto.Clone(a.health).(*protobufs.ComponentHealth)); err != nil {
		return fmt.Errorf("SetHealth: %w", err)
	}
	caps := a.capabilities()
	// opamp-go v0.23.0 checks package capabilities against the PackagesStateProvider in
	// SetCapabilities, but the provider only arrives with Start's settings: set the other bits
	// here, and all of them through StartSettings.Capabilities (deprecated, but checked after the
	// provider is set, in PrepareStart).
	packageBits := protobufs.AgentCapabilities_AgentCapabilities_AcceptsPackages | protobufs.AgentCapabilities_AgentCapabilities_ReportsPackageStatuses
	early := caps &^ packageBits
	if err := c.SetCapabilities(&early); err != nil {
		return fmt.Errorf("SetCapabilities: %w", err)
	}
	var rcs *protobufs.RemoteConfigStatus
	if a.lastStatus != nil {
		rcs = proto.Clone(a.lastStatus).(*protobufs.RemoteConfigStatus)
	}
	settings := types.StartSettings{
		OpAMPServerURL:     a.opts.endpoint,
		Header:             a.opts.header.Clone(),
		InstanceUid:        a.uid,
		RemoteConfigStatus: rcs,
		HeartbeatInterval:  a.opts.heartbeat,
		TLSConfig:          a.opts.tlsConfig,
		Callbacks:          a.callbacks(gen),
	}
	if a.opts.acceptsPackages {
		settings.PackagesStateProvider = a.packages
		settings.Capabilities = caps
	}
	a.firstMessagePend = true
	a.client = c
	// Start without holding a.mu: opamp-go's HTTP client builds the first message inside Start
	// (PrepareFirstMessage calls GetEffectiveConfig, which takes a.mu).
	a.mu.Unlock()
	err := c.Start(context.Background(), settings)
	a.mu.Lock()
	if err != nil {
		if a.client == c {
			a.client = nil
		}
		return fmt.Errorf("Start: %w", err)
	}
	return nil
}

// stopCurrent stops the running client, if any (opamp-go's WebSocket client puts
// agent_disconnect in the last message, client/wsclient.go Stop), and waits up to timeout.
func (a *agent) stopCurrent(timeout time.Duration) error {
	a.mu.Lock()
	c, gen := a.client, a.gen
	a.client = nil
	a.mu.Unlock()
	if c == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	err := c.Stop(ctx)
	a.out.emit("stopped", map[string]any{"client": gen})
	return err
}

func (a *agent) shutdown(timeout time.Duration) {
	if err := a.stopCurrent(timeout); err != nil {
		a.log.Errorf(context.Background(), "stop: %v", err)
	}
}

func (a *agent) callbacks(gen int) types.Callbacks {
	return types.Callbacks{
		OnConnect: func(ctx context.Context) {
			a.out.emit("connected", map[string]any{"client": gen})
		},
		OnConnectFailed: func(ctx context.Context, err error) {
			a.out.emit("connect_failed", map[string]any{"client": gen, "error": errString(err)})
		},
		OnError: func(ctx context.Context, e *protobufs.ServerErrorResponse) {
			a.out.emit("error", map[string]any{"client": gen, "error": e.GetErrorMessage(), "type": e.GetType().String()})
		},
		OnMessage: func(ctx context.Context, msg *types.MessageData) {
			a.onMessage(gen, msg)
		},
		OnOpampConnectionSettings: func(ctx context.Context, s *protobufs.OpAMPConnectionSettings) error {
			// opamp-go has already applied heart_beat_interval_seconds (client/internal/
			// receivedprocessor.go rcvOpampConnectionSettings) before calling us. A new
			// Authorization header (a rotated credential) is acted on as a real agent would:
			// reconnect with it (a new client generation, same instance uid). The endpoint is
			// not switched.
			var offered string
			for _, h := range s.GetHeaders().GetHeaders() {
				if http.CanonicalHeaderKey(h.GetKey()) == "Authorization" {
					offered = h.GetValue()
				}
			}
			a.mu.Lock()
			changed := offered != "" && offered != a.opts.header.Get("Authorization")
			if changed {
				a.opts.header.Set("Authorization", offered)
			}
			restart := changed || a.opts.restartOnOffer
			a.mu.Unlock()
			a.out.emit("connection_settings", map[string]any{
				"client":                   gen,
				"heartbeatIntervalSeconds": s.GetHeartbeatIntervalSeconds(),
				"endpoint":                 s.GetDestinationEndpoint(),
				"authorization":            offered,
				"authorizationChanged":     changed,
				"restarting":               restart,
			})
			if restart {
				// Not from inside opamp-go's callback: Stop waits for the receiver that calls us.
				go a.restartClient(gen, "connection settings offer")
			}
			return nil
		},
		GetEffectiveConfig: func(ctx context.Context) (*protobufs.EffectiveConfig, error) {
			return a.getEffectiveConfig(gen), nil
		},
		DownloadHTTPClient: a.downloadClient,
	}
}

// restartClient stops client generation gen (if it is still the current one) and starts a new
// one, as opamp-go's example agent does on an offer (tryChangeOpAMP: disconnect, then connect).
func (a *agent) restartClient(gen int, why string) {
	a.mu.Lock()
	current := a.gen == gen && a.client != nil
	a.mu.Unlock()
	if !current {
		return
	}
	a.out.emit("restarting", map[string]any{"client": gen, "reason": why})
	if err := a.stopCurrent(5 * time.Second); err != nil {
		a.log.Errorf(context.Background(), "stop for %s: %v", why, err)
	}
	if err := a.start(); err != nil {
		a.out.emit("error", map[string]any{"client": gen, "error": "restart after " + why + ": " + err.Error()})
	}
}

// getEffectiveConfig backs the GetEffectiveConfig callback. opamp-go calls it in exactly three
// places: when it builds a client's first message (clientcommon.go PrepareFirstMessage), from
// our own UpdateEffectiveConfig calls, and when a ServerToAgent carries the ReportFullState flag
// (receivedprocessor.go rcvFlags). MessageData does not expose the flags, so the third case is
// recognised by elimination and reported as full_state_requested. (A ReportFullState arriving
// while one of our own UpdateEffectiveConfig calls is in progress would be missed.)
func (a *agent) getEffectiveConfig(gen int) *protobufs.EffectiveConfig {
	a.mu.Lock()
	var fullState bool
	switch {
	case gen != a.gen:
	case a.effectiveUpdaters > 0:
	case a.firstMessagePend:
		a.firstMessagePend = false
	default:
		fullState = true
	}
	var cfg *protobufs.EffectiveConfig
	if a.effective != nil {
		cfg = &protobufs.EffectiveConfig{ConfigMap: proto.Clone(a.effective).(*protobufs.AgentConfigMap)}
	}
	a.mu.Unlock()
	if fullState {
		a.out.emit("full_state_requested", map[string]any{"client": gen})
	}
	return cfg
}

func (a *agent) onMessage(gen int, msg *types.MessageData) {
	if msg.PackagesAvailable != nil {
		a.onPackagesAvailable(gen, msg.PackagesAvailable, msg.PackageSyncer)
	}
	if id := msg.AgentIdentification; id != nil && len(id.NewInstanceUid) == 16 {
		// opamp-go already switched its sender to the new uid (rcvAgentIdentification); keep it
		// for the next restart too.
		a.mu.Lock()
		copy(a.uid[:], id.NewInstanceUid)
		s := uuid.UUID(a.uid).String()
		a.mu.Unlock()
		a.out.emit("instance_uid_changed", map[string]any{"client": gen, "instanceUid": s})
	}
	if rc := msg.RemoteConfig; rc != nil {
		keys := []string{}
		var body any
		contentType := ""
		for k, f := range rc.GetConfig().GetConfigMap() {
			keys = append(keys, k)
			if k == "" {
				body = string(f.GetBody())
				contentType = f.GetContentType()
			}
		}
		sort.Strings(keys)
		a.out.emit("remote_config", map[string]any{
			"client":      gen,
			"hash":        hex.EncodeToString(rc.GetConfigHash()),
			"body":        body,
			"keys":        keys,
			"contentType": contentType,
		})
		a.mu.Lock()
		p := pendingConfig{rc: rc, mode: a.mode, errText: a.modeError, applyDelay: a.applyDelay}
		a.mu.Unlock()
		// Answered outside the callback, in order, like a real agent applying config.
		a.configs <- p
	}
}

func (a *agent) configWorker() {
	for p := range a.configs {
		hash := p.rc.GetConfigHash()
		switch p.mode {
		case "ignore":
			a.out.emit("config_ignored", map[string]any{"hash": hex.EncodeToString(hash)})
		case "fail":
			a.setRemoteConfigStatus(hash, protobufs.RemoteConfigStatuses_RemoteConfigStatuses_FAILED, p.errText)
		default:
			a.setRemoteConfigStatus(hash, protobufs.RemoteConfigStatuses_RemoteConfigStatuses_APPLYING, "")
			if p.applyDelay > 0 {
				time.Sleep(p.applyDelay)
			}
			a.mu.Lock()
			if m := p.rc.GetConfig(); m != nil {
				a.effective = proto.Clone(m).(*protobufs.AgentConfigMap)
			} else {
				a.effective = &protobufs.AgentConfigMap{}
			}
			a.mu.Unlock()
			if err := a.updateEffectiveConfig(); err != nil {
				a.out.emit("error", map[string]any{"error": "UpdateEffectiveConfig: " + err.Error()})
			}
			a.setRemoteConfigStatus(hash, protobufs.RemoteConfigStatuses_RemoteConfigStatuses_APPLIED, "")
		}
	}
}

func (a *agent) setRemoteConfigStatus(hash []byte, status protobufs.RemoteConfigStatuses, errText string) {
	st := &protobufs.RemoteConfigStatus{
		LastRemoteConfigHash: append([]byte{}, hash...),
		Status:               status,
		ErrorMessage:         errText,
	}
	if hash == nil {
		st.LastRemoteConfigHash = []byte{}
	}
	a.mu.Lock()
	a.lastStatus = proto.Clone(st).(*protobufs.RemoteConfigStatus)
	c := a.client
	a.mu.Unlock()
	if c == nil {
		return
	}
	if err := c.SetRemoteConfigStatus(st); err != nil {
		a.out.emit("error", map[string]any{"error": "SetRemoteConfigStatus: " + err.Error()})
		return
	}
	name := "UNSET"
	switch status {
	case protobufs.RemoteConfigStatuses_RemoteConfigStatuses_APPLIED:
		name = "APPLIED"
	case protobufs.RemoteConfigStatuses_RemoteConfigStatuses_APPLYING:
		name = "APPLYING"
	case protobufs.RemoteConfigStatuses_RemoteConfigStatuses_FAILED:
		name = "FAILED"
	}
	a.out.emit("config_status_sent", map[string]any{"status": name, "hash": hex.EncodeToString(hash), "errorMessage": errText})
}

func (a *agent) updateEffectiveConfig() error {
	a.mu.Lock()
	c := a.client
	a.effectiveUpdaters++
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		a.effectiveUpdaters--
		a.mu.Unlock()
	}()
	if c == nil {
		return errors.New("no client running")
	}
	return c.UpdateEffectiveConfig(context.Background())
}

// ---- commands ----

type healthSpec struct {
	Healthy    *bool                 `json:"healthy"`
	Status     string                `json:"status"`
	LastError  string                `json:"lastError"`
	Components map[string]healthSpec `json:"components"`
}

func (h healthSpec) toProto(start, now uint64) *protobufs.ComponentHealth {
	out := &protobufs.ComponentHealth{
		Healthy:            h.Healthy == nil || *h.Healthy,
		Status:             h.Status,
		LastError:          h.LastError,
		StartTimeUnixNano:  start,
		StatusTimeUnixNano: now,
	}
	if len(h.Components) > 0 {
		out.ComponentHealthMap = make(map[string]*protobufs.ComponentHealth, len(h.Components))
		for k, v := range h.Components {
			out.ComponentHealthMap[k] = v.toProto(start, now)
		}
	}
	return out
}

type command struct {
	Cmd string `json:"cmd"`
	// mode
	RemoteConfig string `json:"remoteConfig"`
	Error        string `json:"error"`
	ApplyDelayMs *int   `json:"applyDelayMs"`
	// health
	healthSpec
	// effective_config
	Body        *string `json:"body"`
	ContentType string  `json:"contentType"`
	// description
	Attrs map[string]any `json:"attrs"`
}

// handleLine runs one command and acknowledges it. It returns true when the process must exit.
func (a *agent) handleLine(line []byte) (exit bool) {
	var cmd command
	if err := json.Unmarshal(line, &cmd); err != nil {
		a.out.emit("ack", map[string]any{"cmd": "", "ok": false, "error": "bad JSON: " + err.Error()})
		return false
	}
	err := a.run(cmd)
	ack := map[string]any{"cmd": cmd.Cmd, "ok": err == nil}
	if err != nil {
		ack["error"] = err.Error()
	}
	a.out.emit("ack", ack)
	return err == nil && cmd.Cmd == "disconnect"
}

func (a *agent) run(cmd command) error {
	switch cmd.Cmd {
	case "mode":
		switch cmd.RemoteConfig {
		case "apply", "fail", "ignore":
		default:
			return fmt.Errorf("remoteConfig must be apply, fail or ignore, got %q", cmd.RemoteConfig)
		}
		a.mu.Lock()
		a.mode = cmd.RemoteConfig
		a.modeError = cmd.Error
		if cmd.ApplyDelayMs != nil {
			a.applyDelay = time.Duration(*cmd.ApplyDelayMs) * time.Millisecond
		}
		a.mu.Unlock()
		return nil

	case "health":
		now := uint64(time.Now().UnixNano())
		h := cmd.healthSpec.toProto(uint64(a.startedAt.UnixNano()), now)
		a.mu.Lock()
		a.health = proto.Clone(h).(*protobufs.ComponentHealth)
		c := a.client
		a.mu.Unlock()
		if c == nil {
			return errors.New("no client running")
		}
		return c.SetHealth(h)

	case "effective_config":
		if cmd.Body == nil {
			return errors.New("body is required")
		}
		ct := cmd.ContentType
		if ct == "" {
			ct = "text/yaml"
		}
		a.mu.Lock()
		a.effective = &protobufs.AgentConfigMap{ConfigMap: map[string]*protobufs.AgentConfigFile{
			"": {Body: []byte(*cmd.Body), ContentType: ct},
		}}
		a.mu.Unlock()
		return a.updateEffectiveConfig()

	case "description":
		kvs, err := anyKVs(cmd.Attrs)
		if err != nil {
			return err
		}
		a.mu.Lock()
		a.nonIdentifying = kvs
		d := a.descriptionLocked()
		c := a.client
		a.mu.Unlock()
		if c == nil {
			return errors.New("no client running")
		}
		return c.SetAgentDescription(d)

	case "restart":
		if err := a.stopCurrent(10 * time.Second); err != nil {
			a.log.Errorf(context.Background(), "stop before restart: %v", err)
		}
		return a.start()

	case "disconnect":
		return a.stopCurrent(10 * time.Second)

	default:
		return fmt.Errorf("unknown command %q", cmd.Cmd)
	}
}

// ---- attribute helpers ----

func stringKVs(items [][2]string) []*protobufs.KeyValue {
	out := make([]*protobufs.KeyValue, 0, len(items))
	for _, kv := range items {
		out = append(out, &protobufs.KeyValue{
			Key:   kv[0],
			Value: &protobufs.AnyValue{Value: &protobufs.AnyValue_StringValue{StringValue: kv[1]}},
		})
	}
	return out
}

// anyKVs converts JSON values: strings, booleans, integers and other numbers (as doubles).
func anyKVs(attrs map[string]any) ([]*protobufs.KeyValue, error) {
	keys := make([]string, 0, len(attrs))
	for k := range attrs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]*protobufs.KeyValue, 0, len(keys))
	for _, k := range keys {
		var v *protobufs.AnyValue
		switch x := attrs[k].(type) {
		case string:
			v = &protobufs.AnyValue{Value: &protobufs.AnyValue_StringValue{StringValue: x}}
		case bool:
			v = &protobufs.AnyValue{Value: &protobufs.AnyValue_BoolValue{BoolValue: x}}
		case float64:
			if x == math.Trunc(x) && math.Abs(x) < 1<<53 {
				v = &protobufs.AnyValue{Value: &protobufs.AnyValue_IntValue{IntValue: int64(x)}}
			} else {
				v = &protobufs.AnyValue{Value: &protobufs.AnyValue_DoubleValue{DoubleValue: x}}
			}
		default:
			return nil, fmt.Errorf("attribute %q: unsupported value %v (use a string, number or boolean)", k, x)
		}
		out = append(out, &protobufs.KeyValue{Key: k, Value: v})
	}
	return out, nil
}

func cloneKVs(in []*protobufs.KeyValue) []*protobufs.KeyValue {
	out := make([]*protobufs.KeyValue, 0, len(in))
	for _, kv := range in {
		out = append(out, proto.Clone(kv).(*protobufs.KeyValue))
	}
	return out
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
