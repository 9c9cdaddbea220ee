module fleetbridge.local/test/goyaml

go 1.26.0

// The YAML library and version the collector's config loader uses
// (go.opentelemetry.io/collector/confmap: NewRetrievedFromYAML) in tools/otel/collector/go.mod, and
// the OpAMP Supervisor's koanf YAML parser in tools/otel/supervisor/go.mod. A test checks they agree.
require go.yaml.in/yaml/v3 v3.0.4
