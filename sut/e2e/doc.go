// Package e2e holds the reference system's end-to-end tests: each starts a
// real local stack (Postgres, Redis, the broker, gateways and workers as
// separate processes, through package stack) and drives it over HTTP.
package e2e
