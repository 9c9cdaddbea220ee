// Command otelcol-fleetbridge is a minimal OpenTelemetry Collector distribution for Fleetbridge's
// end-to-end tests: the components the tests push through OpAMP, plus the opamp extension the
// OpAMP Supervisor needs and the nop receiver/exporter of the supervisor's bootstrap config.
//
// It is what the OpenTelemetry Collector Builder would generate for the same component list
// (a components() factory list handed to otelcol.NewCommand), written by hand so that the build
// needs nothing but `go build`. Versions are pinned in go.mod; built by
// test/harness/otel/build-binaries.mjs (tools/otel/build.sh). See
// docs/adr/0004-otel-agents-from-go-modules.md.
package main

import (
	"os"
	"runtime/debug"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/provider/envprovider"
	"go.opentelemetry.io/collector/confmap/provider/fileprovider"
	"go.opentelemetry.io/collector/confmap/provider/yamlprovider"
	"go.opentelemetry.io/collector/otelcol"
)

const otelcolModule = "go.opentelemetry.io/collector/otelcol"

func main() {
	settings := otelcol.CollectorSettings{
		BuildInfo: component.BuildInfo{
			Command:     "otelcol-fleetbridge",
			Description: "OpenTelemetry Collector for Fleetbridge end-to-end tests",
			// The version of the collector core it is built from, e.g. "0.145.0".
			Version: trimV(moduleVersion(otelcolModule)),
		},
		Factories: components,
		ConfigProviderSettings: otelcol.ConfigProviderSettings{
			ResolverSettings: confmap.ResolverSettings{
				ProviderFactories: []confmap.ProviderFactory{
					envprovider.NewFactory(),
					fileprovider.NewFactory(),
					yamlprovider.NewFactory(),
				},
			},
		},
	}
	if err := otelcol.NewCommand(settings).Execute(); err != nil {
		// cobra has printed the error already.
		os.Exit(1)
	}
}

// moduleVersion is the version of a dependency as recorded in the binary's build info.
func moduleVersion(path string) string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	for _, dep := range info.Deps {
		if dep.Path == path {
			if dep.Replace != nil {
				return dep.Replace.Version
			}
			return dep.Version
		}
	}
	return "unknown"
}

func trimV(v string) string {
	if len(v) > 1 && v[0] == 'v' {
		return v[1:]
	}
	return v
}
