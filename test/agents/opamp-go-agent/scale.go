package main

// Scale mode (--agents N): N independent agents, each with its own opamp-go client and a
// distinct instance uid, in one process. They share every flag; each also gets the
// non-identifying attribute <--index-attr>=<--index-offset + i> (i = 0..N-1), so a test can run
// 1,000 agents with a few processes and still tell them apart.
//
// Events (stdout, one JSON object per line) are counts, not per-agent lines:
//
//	started {agents, instanceUids, indexOffset}   every client was started (instanceUids[i] is agent i)
//	summary {seq, agents, connected, connects, connectFailed, remoteConfigs, offers,
//	         fullStateRequests, restarts, errors, status:{APPLIED,APPLYING,FAILED,NONE},
//	         appliedHashes:{hex: count}, failedHashes:{hex: count}, uidChanges}
//	    emitted (at most every --summary-ms, default 200) whenever a count changed, and on the
//	    "summary" command. connected counts agents whose last connection event was OnConnect
//	    (opamp-go has no "disconnected" callback: an agent stays counted until a connect attempt
//	    fails or its client is stopped). status counts each agent's last config_status_sent;
//	    appliedHashes counts the agents whose last status is APPLIED, by hash.
//	ack {cmd, ok, error?}
//
// With --events all, every per-agent event is also written, with "agent": i added.
//
// Commands (stdin): {"cmd":"mode",...}, {"cmd":"restart"}, {"cmd":"health",...} as in agent.go,
// applied to every agent, or only to {"agents":[i,...]}; {"cmd":"summary"} emits a summary now;
// {"cmd":"disconnect"} stops every client (agent_disconnect) and exits.

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"
)

// eventSink receives an agent's events: the stdout emitter (one agent) or a scaleSink.
type eventSink interface {
	emit(event string, fields map[string]any)
}

type agentCounts struct {
	connected   bool
	lastStatus  string // "" until a config status was sent
	lastHash    string
	connects    int
	connectFail int
	configs     int
	offers      int
	fullState   int
	restarts    int
	errors      int
	uidChanges  int
}

type scaleAggregator struct {
	out     *emitter
	verbose bool

	mu     sync.Mutex
	agents []agentCounts
	dirty  bool
	seq    int
}

type scaleSink struct {
	agg *scaleAggregator
	idx int
}

func (s scaleSink) emit(event string, fields map[string]any) {
	s.agg.record(s.idx, event, fields)
}

func (g *scaleAggregator) record(idx int, event string, fields map[string]any) {
	if g.verbose {
		f := make(map[string]any, len(fields)+1)
		for k, v := range fields {
			f[k] = v
		}
		f["agent"] = idx
		g.out.emit(event, f)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	c := &g.agents[idx]
	switch event {
	case "connected":
		c.connected = true
		c.connects++
	case "connect_failed":
		c.connected = false
		c.connectFail++
	case "stopped":
		c.connected = false
	case "remote_config":
		c.configs++
	case "config_status_sent":
		c.lastStatus, _ = fields["status"].(string)
		c.lastHash, _ = fields["hash"].(string)
	case "connection_settings":
		c.offers++
	case "full_state_requested":
		c.fullState++
	case "restarting":
		c.restarts++
	case "error":
		c.errors++
	case "instance_uid_changed":
		c.uidChanges++
	default:
		return
	}
	g.dirty = true
}

func (g *scaleAggregator) summary(force bool) {
	g.mu.Lock()
	if !g.dirty && !force {
		g.mu.Unlock()
		return
	}
	g.dirty = false
	g.seq++
	s := map[string]any{"seq": g.seq, "agents": len(g.agents)}
	var connected, connects, connectFailed, configs, offers, fullState, restarts, errs, uidChanges int
	status := map[string]int{"APPLIED": 0, "APPLYING": 0, "FAILED": 0, "NONE": 0}
	applied := map[string]int{}
	failed := map[string]int{}
	for _, c := range g.agents {
		if c.connected {
			connected++
		}
		connects += c.connects
		connectFailed += c.connectFail
		configs += c.configs
		offers += c.offers
		fullState += c.fullState
		restarts += c.restarts
		errs += c.errors
		uidChanges += c.uidChanges
		switch c.lastStatus {
		case "":
			status["NONE"]++
		case "APPLIED":
			status["APPLIED"]++
			applied[c.lastHash]++
		case "FAILED":
			status["FAILED"]++
			failed[c.lastHash]++
		default:
			status[c.lastStatus]++
		}
	}
	g.mu.Unlock()
	s["connected"] = connected
	s["connects"] = connects
	s["connectFailed"] = connectFailed
	s["remoteConfigs"] = configs
	s["offers"] = offers
	s["fullStateRequests"] = fullState
	s["restarts"] = restarts
	s["errors"] = errs
	s["uidChanges"] = uidChanges
	s["status"] = status
	s["appliedHashes"] = applied
	s["failedHashes"] = failed
	g.out.emit("summary", s)
}

type scaleOptions struct {
	count       int
	indexAttr   string
	indexOffset int
	verbose     bool
	summaryMs   int
	maxLifetime time.Duration
}

// runScale runs the agents until stdin closes, a signal arrives or --max-lifetime passes.
func runScale(base agentOptions, so scaleOptions, out *emitter, logger *stderrLogger, lines <-chan []byte, readErr <-chan error, sigs <-chan osSignal) int {
	agg := &scaleAggregator{out: out, verbose: so.verbose, agents: make([]agentCounts, so.count)}
	agents := make([]*agent, so.count)
	uids := make([]string, so.count)
	for i := 0; i < so.count; i++ {
		uid, err := uuid.NewV7()
		if err != nil {
			out.emit("start_failed", map[string]any{"error": "cannot generate a UUIDv7: " + err.Error()})
			return 1
		}
		o := base
		o.uid = uid
		o.header = base.header.Clone()
		o.attrs = append(append([][2]string{}, base.attrs...), [2]string{so.indexAttr, strconv.Itoa(so.indexOffset + i)})
		agents[i] = newAgent(o, scaleSink{agg: agg, idx: i}, logger)
		uids[i] = uid.String()
	}
	stopAll := func() {
		var wg sync.WaitGroup
		for _, a := range agents {
			wg.Add(1)
			go func(a *agent) {
				defer wg.Done()
				a.shutdown(3 * time.Second)
			}(a)
		}
		wg.Wait()
	}
	for i, a := range agents {
		if err := a.start(); err != nil {
			out.emit("start_failed", map[string]any{"error": fmt.Sprintf("agent %d: %v", i, err)})
			stopAll()
			return 1
		}
	}
	out.emit("started", map[string]any{"agents": so.count, "instanceUids": uids, "indexOffset": so.indexOffset})

	time.AfterFunc(so.maxLifetime, func() {
		logger.Errorf(context.Background(), "--max-lifetime %s reached, exiting", so.maxLifetime)
		stopAll()
		agg.summary(true)
		osExit(3)
	})

	tick := time.NewTicker(time.Duration(so.summaryMs) * time.Millisecond)
	defer tick.Stop()
	agg.summary(true)
	for {
		select {
		case <-tick.C:
			agg.summary(false)
		case line := <-lines:
			cmd, targets, err := parseScaleCommand(line, len(agents))
			if err != nil {
				out.emit("ack", map[string]any{"cmd": cmd.Cmd, "ok": false, "error": err.Error()})
				continue
			}
			switch cmd.Cmd {
			case "summary":
				agg.summary(true)
				out.emit("ack", map[string]any{"cmd": cmd.Cmd, "ok": true})
			case "disconnect":
				stopAll()
				agg.summary(true)
				out.emit("ack", map[string]any{"cmd": cmd.Cmd, "ok": true})
				return 0
			default:
				// Run on every target in parallel (a restart waits for each client's Stop).
				var wg sync.WaitGroup
				var mu sync.Mutex
				var errs []string
				for _, i := range targets {
					wg.Add(1)
					go func(i int) {
						defer wg.Done()
						if err := agents[i].run(cmd); err != nil {
							mu.Lock()
							errs = append(errs, fmt.Sprintf("agent %d: %v", i, err))
							mu.Unlock()
						}
					}(i)
				}
				wg.Wait()
				ack := map[string]any{"cmd": cmd.Cmd, "ok": len(errs) == 0}
				if len(errs) > 0 {
					sort.Strings(errs)
					if len(errs) > 5 {
						errs = append(errs[:5], fmt.Sprintf("and %d more", len(errs)-5))
					}
					ack["error"] = fmt.Sprint(errs)
				}
				out.emit("ack", ack)
			}
		case err := <-readErr:
			if err != nil {
				logger.Errorf(context.Background(), "reading stdin: %v", err)
			}
			stopAll()
			return 0
		case s := <-sigs:
			logger.Errorf(context.Background(), "received %s, stopping", s)
			stopAll()
			return 0
		}
	}
}

// parseScaleCommand decodes a command and the agent indices it targets (all when "agents" is absent).
func parseScaleCommand(line []byte, n int) (command, []int, error) {
	var cmd command
	if err := json.Unmarshal(line, &cmd); err != nil {
		return cmd, nil, fmt.Errorf("bad JSON: %w", err)
	}
	var sel struct {
		Agents *[]int `json:"agents"`
	}
	_ = json.Unmarshal(line, &sel)
	switch cmd.Cmd {
	case "mode", "restart", "health", "summary", "disconnect", "effective_config", "description":
	default:
		return cmd, nil, fmt.Errorf("unknown command %q", cmd.Cmd)
	}
	if sel.Agents == nil {
		all := make([]int, n)
		for i := range all {
			all[i] = i
		}
		return cmd, all, nil
	}
	for _, i := range *sel.Agents {
		if i < 0 || i >= n {
			return cmd, nil, fmt.Errorf("agent index %d out of range 0..%d", i, n-1)
		}
	}
	return cmd, *sel.Agents, nil
}
