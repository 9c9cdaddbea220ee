package main

import (
	"github.com/open-telemetry/opentelemetry-collector-contrib/exporter/fileexporter"
	"github.com/open-telemetry/opentelemetry-collector-contrib/extension/healthcheckextension"
	"github.com/open-telemetry/opentelemetry-collector-contrib/extension/opampextension"
	"github.com/open-telemetry/opentelemetry-collector-contrib/processor/attributesprocessor"
	"github.com/open-telemetry/opentelemetry-collector-contrib/processor/resourceprocessor"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/connector"
	"go.opentelemetry.io/collector/exporter"
	"go.opentelemetry.io/collector/exporter/debugexporter"
	"go.opentelemetry.io/collector/exporter/nopexporter"
	"go.opentelemetry.io/collector/extension"
	"go.opentelemetry.io/collector/otelcol"
	"go.opentelemetry.io/collector/processor"
	"go.opentelemetry.io/collector/processor/batchprocessor"
	"go.opentelemetry.io/collector/receiver"
	"go.opentelemetry.io/collector/receiver/nopreceiver"
	"go.opentelemetry.io/collector/receiver/otlpreceiver"
	"go.opentelemetry.io/collector/service/telemetry/otelconftelemetry"
)

const contrib = "github.com/open-telemetry/opentelemetry-collector-contrib/"

// Every component a test pushes through OpAMP must be listed here.
var (
	extensions = []named[extension.Factory]{
		{opampextension.NewFactory(), contrib + "extension/opampextension"},
		{healthcheckextension.NewFactory(), contrib + "extension/healthcheckextension"},
	}
	receivers = []named[receiver.Factory]{
		{otlpreceiver.NewFactory(), "go.opentelemetry.io/collector/receiver/otlpreceiver"},
		{nopreceiver.NewFactory(), "go.opentelemetry.io/collector/receiver/nopreceiver"},
	}
	processors = []named[processor.Factory]{
		{batchprocessor.NewFactory(), "go.opentelemetry.io/collector/processor/batchprocessor"},
		{attributesprocessor.NewFactory(), contrib + "processor/attributesprocessor"},
		{resourceprocessor.NewFactory(), contrib + "processor/resourceprocessor"},
	}
	exporters = []named[exporter.Factory]{
		{debugexporter.NewFactory(), "go.opentelemetry.io/collector/exporter/debugexporter"},
		{fileexporter.NewFactory(), contrib + "exporter/fileexporter"},
		{nopexporter.NewFactory(), "go.opentelemetry.io/collector/exporter/nopexporter"},
	}
)

// named is a factory and the Go module it comes from (shown by `components` and reported as
// available components over OpAMP, as in builder-generated distributions).
type named[F component.Factory] struct {
	factory F
	module  string
}

func factoryMap[F component.Factory](list []named[F]) (map[component.Type]F, map[component.Type]string, error) {
	factories := make([]F, 0, len(list))
	modules := make(map[component.Type]string, len(list))
	for _, n := range list {
		factories = append(factories, n.factory)
		modules[n.factory.Type()] = n.module + " " + moduleVersion(n.module)
	}
	m, err := otelcol.MakeFactoryMap(factories...)
	return m, modules, err
}

func components() (otelcol.Factories, error) {
	var err error
	f := otelcol.Factories{Telemetry: otelconftelemetry.NewFactory()}
	if f.Extensions, f.ExtensionModules, err = factoryMap(extensions); err != nil {
		return otelcol.Factories{}, err
	}
	if f.Receivers, f.ReceiverModules, err = factoryMap(receivers); err != nil {
		return otelcol.Factories{}, err
	}
	if f.Processors, f.ProcessorModules, err = factoryMap(processors); err != nil {
		return otelcol.Factories{}, err
	}
	if f.Exporters, f.ExporterModules, err = factoryMap(exporters); err != nil {
		return otelcol.Factories{}, err
	}
	if f.Connectors, err = otelcol.MakeFactoryMap[connector.Factory](); err != nil {
		return otelcol.Factories{}, err
	}
	return f, nil
}
