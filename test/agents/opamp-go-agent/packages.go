package main

// Packages: with --accepts-packages the agent advertises AcceptsPackages and ReportsPackageStatuses
// and gives opamp-go a PackagesStateProvider (memPackages below). opamp-go's packages syncer does the
// protocol work (client/internal/packagessyncer.go): it compares all_packages_hash and each package's
// hash, downloads changed files with the offered headers through the DownloadHTTPClient callback,
// and reports PackageStatuses (Installing, Downloading, Installed, InstallFailed). What a real agent
// must do itself, and this one does, is in UpdateContent: read the file and check it against the
// offered content_hash (SHA-256), failing the install when it does not match.
//
// Events:
//
//	packages_available {client, allPackagesHash, packages: {name: {version, hash, url, contentHash, headers}}}
//	package_download {url, status, authorization}   one per HTTP GET (status 0: transport error)
//	packages_synced {allPackagesHash, statuses: {name: {status, agentHasVersion, agentHasHash, errorMessage}}}
//	package_installed {name, bytes, sha256}

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"sync"

	"github.com/open-telemetry/opamp-go/client/types"
	"github.com/open-telemetry/opamp-go/protobufs"
	"google.golang.org/protobuf/proto"
)

const maxPackageBytes = 256 << 20

type memPackage struct {
	state       types.PackageState
	content     []byte
	contentHash []byte
}

// memPackages keeps packages in memory for the life of the process (across client restarts).
type memPackages struct {
	mu       sync.Mutex
	allHash  []byte
	packages map[string]*memPackage
	statuses *protobufs.PackageStatuses
	out      eventSink
}

func newMemPackages(out eventSink) *memPackages {
	return &memPackages{packages: map[string]*memPackage{}, out: out}
}

func (m *memPackages) AllPackagesHash() ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]byte(nil), m.allHash...), nil
}

func (m *memPackages) SetAllPackagesHash(hash []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.allHash = append([]byte(nil), hash...)
	return nil
}

func (m *memPackages) Packages() ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	names := make([]string, 0, len(m.packages))
	for n := range m.packages {
		names = append(names, n)
	}
	return names, nil
}

func (m *memPackages) PackageState(name string) (types.PackageState, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p, ok := m.packages[name]
	if !ok {
		return types.PackageState{Exists: false}, nil
	}
	return p.state, nil
}

func (m *memPackages) SetPackageState(name string, state types.PackageState) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	p, ok := m.packages[name]
	if !ok {
		return fmt.Errorf("package %q does not exist", name)
	}
	if p.state.Type != state.Type {
		return fmt.Errorf("package %q is of another type", name)
	}
	state.Exists = true
	p.state = state
	return nil
}

func (m *memPackages) CreatePackage(name string, typ protobufs.PackageType) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.packages[name]; ok {
		return fmt.Errorf("package %q already exists", name)
	}
	m.packages[name] = &memPackage{state: types.PackageState{Exists: true, Type: typ}}
	return nil
}

func (m *memPackages) FileContentHash(name string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p, ok := m.packages[name]
	if !ok {
		return nil, nil
	}
	return append([]byte(nil), p.contentHash...), nil
}

// UpdateContent reads the download and installs it only when its SHA-256 is the offered content_hash.
func (m *memPackages) UpdateContent(ctx context.Context, name string, data io.Reader, contentHash, signature []byte) error {
	body, err := io.ReadAll(io.LimitReader(data, maxPackageBytes+1))
	if err != nil {
		return fmt.Errorf("reading the download: %w", err)
	}
	if len(body) > maxPackageBytes {
		return fmt.Errorf("the file exceeds %d bytes", maxPackageBytes)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	sum := sha256.Sum256(body)
	if !bytes.Equal(sum[:], contentHash) {
		return fmt.Errorf("content hash mismatch: the file's SHA-256 is %s, the offer says %s", hex.EncodeToString(sum[:]), hex.EncodeToString(contentHash))
	}
	m.mu.Lock()
	p, ok := m.packages[name]
	if !ok {
		m.mu.Unlock()
		return fmt.Errorf("package %q does not exist", name)
	}
	p.content = body
	p.contentHash = append([]byte(nil), contentHash...)
	m.mu.Unlock()
	m.out.emit("package_installed", map[string]any{"name": name, "bytes": len(body), "sha256": hex.EncodeToString(sum[:])})
	return nil
}

func (m *memPackages) DeletePackage(name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.packages, name)
	return nil
}

func (m *memPackages) LastReportedStatuses() (*protobufs.PackageStatuses, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.statuses == nil {
		return nil, nil
	}
	return proto.Clone(m.statuses).(*protobufs.PackageStatuses), nil
}

func (m *memPackages) SetLastReportedStatuses(s *protobufs.PackageStatuses) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.statuses = proto.Clone(s).(*protobufs.PackageStatuses)
	return nil
}

// statusesEvent is the packages_synced payload: the statuses the agent reports now.
func (m *memPackages) statusesEvent() map[string]any {
	st, _ := m.LastReportedStatuses()
	out := map[string]any{}
	hash := ""
	if st != nil {
		hash = hex.EncodeToString(st.GetServerProvidedAllPackagesHash())
		for name, s := range st.GetPackages() {
			out[name] = map[string]any{
				"status":          s.GetStatus().String(),
				"agentHasVersion": s.GetAgentHasVersion(),
				"agentHasHash":    hex.EncodeToString(s.GetAgentHasHash()),
				"errorMessage":    s.GetErrorMessage(),
			}
		}
	}
	return map[string]any{"allPackagesHash": hash, "statuses": out}
}

// downloadClient reports every package GET (URL, HTTP status and the Authorization header sent) and
// presents the agent's client certificate, if any, like its OpAMP connection does.
func (a *agent) downloadClient(ctx context.Context, file *protobufs.DownloadableFile) (*http.Client, error) {
	base := http.DefaultTransport.(*http.Transport).Clone()
	if a.opts.tlsConfig != nil {
		base.TLSClientConfig = a.opts.tlsConfig.Clone()
	}
	return &http.Client{Transport: &reportingTransport{base: base, out: a.out}}, nil
}

type reportingTransport struct {
	base http.RoundTripper
	out  eventSink
}

func (t *reportingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	res, err := t.base.RoundTrip(req)
	status := 0
	if res != nil {
		status = res.StatusCode
	}
	t.out.emit("package_download", map[string]any{"url": req.URL.String(), "status": status, "authorization": req.Header.Get("Authorization")})
	return res, err
}

// onPackagesAvailable reports the offer and runs opamp-go's syncer, then reports the outcome.
func (a *agent) onPackagesAvailable(gen int, avail *protobufs.PackagesAvailable, syncer types.PackagesSyncer) {
	pkgs := map[string]any{}
	for name, p := range avail.GetPackages() {
		headers := map[string]string{}
		for _, h := range p.GetFile().GetHeaders().GetHeaders() {
			headers[h.GetKey()] = h.GetValue()
		}
		pkgs[name] = map[string]any{
			"type":        p.GetType().String(),
			"version":     p.GetVersion(),
			"hash":        hex.EncodeToString(p.GetHash()),
			"url":         p.GetFile().GetDownloadUrl(),
			"contentHash": hex.EncodeToString(p.GetFile().GetContentHash()),
			"signature":   hex.EncodeToString(p.GetFile().GetSignature()),
			"headers":     headers,
		}
	}
	a.out.emit("packages_available", map[string]any{"client": gen, "allPackagesHash": hex.EncodeToString(avail.GetAllPackagesHash()), "packages": pkgs})
	if syncer == nil {
		a.out.emit("error", map[string]any{"client": gen, "error": "PackagesAvailable without a syncer (capability or state provider missing)"})
		return
	}
	if err := syncer.Sync(context.Background()); err != nil {
		a.out.emit("error", map[string]any{"client": gen, "error": "package sync: " + err.Error()})
		return
	}
	go func() {
		<-syncer.Done()
		a.out.emit("packages_synced", a.packages.statusesEvent())
	}()
}
