// Command ledgerproof is the one binary of Ledgerproof: it runs the reference
// system's processes (gateway, worker, broker), the local stack that starts
// them (up, down, stack), and the harness's tools.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
)

// command is one subcommand of the CLI. newFlags builds its flag set so the
// flags can be listed by help and by tests (the compose test checks that the
// flags docker-compose.yml passes exist); run receives the parsed flag set.
// A command's error exits 1 after run prints it; a command with exit codes
// of its own returns them as an *exitError (exitWith). No command calls
// os.Exit: main is the only one that does.
type command struct {
	summary  string
	newFlags func() (*flag.FlagSet, func(ctx context.Context, flags *flag.FlagSet) error)
}

// commands is the dispatch table; each entry's code lives in its own file.
func commands() map[string]command {
	return map[string]command{
		"gateway":  {"run an HTTP gateway of the reference system", gatewayCommand},
		"worker":   {"run a ledger worker (consumes commands, applies them to Postgres)", workerCommand},
		"broker":   {"run the local Kafka-protocol broker (kfake with a data directory)", brokerCommand},
		"proxy":    {"run the local stack's fault proxy (toxiproxy embedded): one TCP proxy per link, toxiproxy's HTTP API", proxyCommand},
		"link":     {"put a fault on a link of a stack started with 'up --proxies' (latency, cut, ...), heal it, or list the links", linkCommand},
		"migrate":  {"apply the ledger's database migrations", migrateCommand},
		"up":       {"start the local stack (Postgres, Redis, broker, gateways, workers)", upCommand},
		"down":     {"stop everything the local stack started", downCommand},
		"stack":    {"show the local stack, or stop/kill/start/restart one component", stackCommand},
		"demo":     {"walk a scripted flow over HTTP against a running stack", demoCommand},
		"bench":    {"measure batched apply against the naive design on Postgres", benchCommand},
		"capacity": {"step the load up on a fresh stack per mode (batched, naive), sample CPU, audit, report (make capacity)", capacityCommand},
		"audit":    {"check a run's journal against the ledger (exit 0 passed, 1 violated, 2 could not audit, 4 weak)", auditCommand},
		"chaos":    {"apply a chaos plan (timeline of faults) to a running stack; writes the run's chaos log", chaosCommand},
		"report":   {"render a run directory's report (index.html, junit.xml, summary.json), or --compare two runs", reportCommand},
		"run":      {"the main job: load + chaos + drain + audit + report (exit 0 passed, 1 invariant violated, 2 could not run, 3 threshold failed)", runCommand},

		"load":      {"run a load scenario against a system: setup, schedule, journal, summary (exit 0 passed, 99 threshold failed, 2 could not run)", loadCommand},
		"gate-bugs": {"judge make gate-bugs' runs: the default gate against every seeded bug, then clean (docs/ci.md)", gateBugsCommand},
		"mutation":  {"run every seeded bug and the clean system under their fault profiles; print the matrix (make mutation)", mutationCommand},

		"bench-load": {"measure the load engine's CPU per operation beside a bare net/http loop (make bench-load)", benchLoadCommand},

		"relay":   {"run the outbox relay: publishes settled transactions' events to the settlements topic (docs/settlement.md)", relayCommand},
		"settler": {"run the settlement consumer: applies each settlement event once to settlement_history (docs/settlement.md)", settlerCommand},
	}
}

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(os.Stdout)
		return 0
	}
	cmd, ok := commands()[args[0]]
	if !ok {
		fmt.Fprintf(os.Stderr, "ledgerproof: unknown command %q\n\n", args[0])
		usage(os.Stderr)
		return 2
	}
	flags, runCommand := cmd.newFlags()
	if err := parseFlags(flags, args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(os.Stderr, "ledgerproof %s: %v\n", args[0], err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), interruptSignals...)
	defer stop()
	if err := runCommand(ctx, flags); err != nil {
		var exit *exitError
		if !errors.As(err, &exit) {
			fmt.Fprintf(os.Stderr, "ledgerproof %s: %v\n", args[0], err)
			return 1
		}
		if exit.err != nil {
			fmt.Fprintf(os.Stderr, "ledgerproof %s: %v\n", args[0], exit.err)
		}
		return exit.code
	}
	return 0
}

// exitError ends a command with an exit code of its own (the audit's,
// the run's, the load's...): run exits with code, after printing err as it
// prints any command's error, or printing nothing when err is nil (the
// command has said why itself).
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit %d", e.code)
	}
	return fmt.Sprintf("%v (exit %d)", e.err, e.code)
}

func (e *exitError) Unwrap() error { return e.err }

// exitWith is a command's outcome from its exit code: nil for 0, else an
// *exitError of code and err (nil when the command has printed its message).
// An error never exits 0: with code 0 it exits 1, as any command error does.
func exitWith(code int, err error) error {
	switch {
	case err == nil && code == 0:
		return nil
	case err != nil && code == 0:
		code = 1
	}
	return &exitError{code: code, err: err}
}

// interruptSignals end a command's context (Ctrl-C, or a stop from a
// supervisor); a second one cuts a run's audit and report short too.
var interruptSignals = []os.Signal{os.Interrupt, syscall.SIGTERM}

func usage(w *os.File) {
	fmt.Fprintln(w, "usage: ledgerproof <command> [flags]\n\ncommands:")
	all := commands()
	names := make([]string, 0, len(all))
	for name := range all {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		fmt.Fprintf(w, "  %-9s %s\n", name, all[name].summary)
	}
	fmt.Fprintln(w, "\nRun 'ledgerproof <command> -h' for a command's flags. Every flag --name-of-flag can")
	fmt.Fprintln(w, "also be set with the environment variable LEDGERPROOF_NAME_OF_FLAG; a flag on the")
	fmt.Fprintln(w, "command line wins over the environment.")
}

// envName is the environment variable that sets a flag.
func envName(flagName string) string {
	return "LEDGERPROOF_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// parseFlags parses the command line, then fills every flag not given on it
// from its LEDGERPROOF_* environment variable. Flags are read only here, in
// cmd; the packages receive plain config structs.
func parseFlags(flags *flag.FlagSet, args []string) error {
	if err := flags.Parse(args); err != nil {
		return err
	}
	if flags.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", flags.Arg(0))
	}
	given := map[string]bool{}
	flags.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var firstError error
	flags.VisitAll(func(f *flag.Flag) {
		if given[f.Name] || firstError != nil {
			return
		}
		if value, ok := os.LookupEnv(envName(f.Name)); ok {
			if err := f.Value.Set(value); err != nil {
				firstError = fmt.Errorf("environment %s=%q: %w", envName(f.Name), value, err)
			}
		}
	})
	return firstError
}
