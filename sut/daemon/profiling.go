package daemon

import (
	"net"
	"net/http"
	"net/http/pprof"
)

// pprofPrefix is where Config.Profiling (--pprof) serves Go's profiles
// (net/http/pprof).
const pprofPrefix = "/debug/pprof/"

// withProfiling serves Go's profiling endpoints under /debug/pprof/ in front
// of handler when enabled (Config.Profiling, the --pprof flag of gateway and
// worker); disabled, it returns handler unchanged and /debug/pprof is a 404
// like any unknown route. Profiles reveal memory contents and cost CPU, so
// they answer only requests from a loopback address: a gateway listening on
// all interfaces still keeps them to the machine it runs on.
func withProfiling(handler http.Handler, enabled bool) http.Handler {
	if !enabled {
		return handler
	}
	profiles := http.NewServeMux()
	profiles.HandleFunc(pprofPrefix, pprof.Index)
	profiles.HandleFunc(pprofPrefix+"cmdline", pprof.Cmdline)
	profiles.HandleFunc(pprofPrefix+"profile", pprof.Profile)
	profiles.HandleFunc(pprofPrefix+"symbol", pprof.Symbol)
	profiles.HandleFunc(pprofPrefix+"trace", pprof.Trace)
	mux := http.NewServeMux()
	mux.Handle(pprofPrefix, loopbackOnly(profiles))
	mux.Handle("/", handler)
	return mux
}

// loopbackOnly refuses (403) requests whose peer is not a loopback address.
func loopbackOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
			http.Error(w, "profiles are served to loopback clients only", http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r)
	})
}
