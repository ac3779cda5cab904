package runner

import (
	"runtime/debug"
	"sync"
)

// buildStamp is what this binary's build info says of its source: the main module's version and the VCS
// revision and modified flag the go command stamped (none when built outside a checkout or without VCS
// stamping). It is read once.
type buildStamp struct {
	ok       bool
	version  string
	revision string
	modified bool
}

var readBuildStamp = sync.OnceValue(func() buildStamp {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return buildStamp{}
	}
	stamp := buildStamp{ok: true, version: info.Main.Version}
	for _, setting := range info.Settings {
		switch setting.Key {
		case "vcs.revision":
			stamp.revision = setting.Value
		case "vcs.modified":
			stamp.modified = setting.Value == "true"
		}
	}
	return stamp
})

// Revision is the full VCS revision this binary was built from, with " (modified)" when the checkout had
// uncommitted changes; "" when the build has no VCS stamp. The mutation matrix records it (matrix.json's
// commit).
func Revision() string {
	stamp := readBuildStamp()
	if stamp.revision != "" && stamp.modified {
		return stamp.revision + " (modified)"
	}
	return stamp.revision
}
