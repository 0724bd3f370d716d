// Package dashboards holds the Grafana dashboards that ship with the
// exporter. The JSON files are generated from the definitions in
// definitions_test.go: edit those, then run
//
//	go test ./dashboards -update
//
// The package's tests fail when a JSON file and its definition disagree, and
// check what every panel must carry (description, unit, data source).
package dashboards

import "embed"

// Files are the dashboards as shipped, one JSON file each.
//
//go:embed *.json
var Files embed.FS
