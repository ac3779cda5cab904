package stack

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// UpAndPrint starts the stack with Up and prints to w what it did, where
// the stack's services answer and, when it started seeded bugs, a warning
// that the stack loses or duplicates money on purpose.
func UpAndPrint(ctx context.Context, config Config, w io.Writer) error {
	result, err := Up(ctx, config)
	if err != nil {
		return err
	}
	if result.AlreadyRunning {
		fmt.Fprintf(w, "stack already running in %s (nothing started)\n", result.File.Dir)
	} else {
		fmt.Fprintf(w, "stack up in %s\n", result.File.Dir)
	}
	printEndpoints(w, result.File)
	if len(config.SeededBugs) > 0 && !result.AlreadyRunning {
		fmt.Fprintf(w, "  SEEDED BUGS:    %s (this stack loses or duplicates money on purpose; see docs/seeded-bugs.md)\n", strings.Join(config.SeededBugs, ","))
	}
	return nil
}

// printEndpoints prints to w where the stack's services answer.
func printEndpoints(w io.Writer, file *File) {
	endpoints := file.Endpoints
	fmt.Fprintf(w, "  postgres:       %s\n", endpoints.PostgresURL)
	for i, url := range endpoints.ShardPostgresURLs {
		fmt.Fprintf(w, "  postgres shard %d: %s\n", i+1, url)
	}
	fmt.Fprintf(w, "  redis:          %s\n", endpoints.RedisAddr)
	fmt.Fprintf(w, "  brokers:        %s\n", strings.Join(endpoints.Brokers, ","))
	fmt.Fprintf(w, "  gateways:       %s\n", strings.Join(endpoints.Gateways, " "))
	if len(endpoints.GatewayInternal) > 0 {
		fmt.Fprintf(w, "  gateway internal (readiness, metrics): %s\n", strings.Join(endpoints.GatewayInternal, " "))
	}
	fmt.Fprintf(w, "  worker metrics: %s\n", strings.Join(endpoints.WorkerMetrics, " "))
	fmt.Fprintf(w, "  stack file:     %s\n", file.Dir+"/"+FileName)
}

// printStatus prints to w the components of the stack in dir and their live
// state: a table, or with asJSON the stack file as JSON with each
// component's live state.
func printStatus(w io.Writer, dir string, asJSON bool) error {
	file, err := Status(dir)
	if err != nil {
		return err
	}
	if asJSON {
		type liveComponent struct {
			*Component
			Live string `json:"live"`
		}
		live := struct {
			*File
			Components []liveComponent `json:"components"`
		}{File: file}
		for _, component := range file.Components {
			live.Components = append(live.Components, liveComponent{component, component.Status()})
		}
		encoder := json.NewEncoder(w)
		encoder.SetIndent("", "  ")
		return encoder.Encode(live)
	}
	fmt.Fprintf(w, "stack %s (started %s)\n", file.Dir, file.StartedAt.Format(time.RFC3339))
	table := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(table, "NAME\tSTATE\tENDPOINT\tLOG")
	for _, component := range file.Components {
		fmt.Fprintf(table, "%s\t%s\t%s\t%s\n", component.Name, component.Status(), component.Endpoint, component.LogFile)
	}
	return table.Flush()
}

// ControlOptions say what Control does: show the stack, apply an action to
// one component, or fail over Postgres. The messages of validate name the
// `ledgerproof stack` flags that set each field.
type ControlOptions struct {
	// Dir is the stack directory.
	Dir string
	// Action is stop, kill, start or restart (of Component), or failover
	// (kill the Postgres primary, promote the standby). Empty shows the
	// stack.
	Action string
	// Component is the component to act on: postgres, redis, broker,
	// gateway-N, worker-N. Only with an action other than failover.
	Component string
	// ReadyTimeout bounds how long start, restart and failover wait for
	// readiness.
	ReadyTimeout time.Duration
	// JSON shows the stack file as JSON instead of a table.
	JSON bool
}

// validate rejects a component without an action, or an action without
// the component it needs.
func (o ControlOptions) validate() error {
	switch {
	case o.Action == "":
		if o.Component != "" {
			return errors.New("--component needs --action")
		}
	case o.Action == "failover":
		if o.Component != "" {
			return errors.New("--action failover takes no --component: it kills the primary and promotes the standby")
		}
	case o.Component == "":
		return fmt.Errorf("--action %s needs --component", o.Action)
	}
	return nil
}

// Control shows the stack in options.Dir on w, or applies options.Action
// and prints its outcome on w.
func Control(ctx context.Context, options ControlOptions, w io.Writer) error {
	if err := options.validate(); err != nil {
		return err
	}
	if options.Action == "" {
		return printStatus(w, options.Dir, options.JSON)
	}
	if options.Action == "failover" {
		failoverContext, cancel := context.WithTimeout(ctx, options.ReadyTimeout)
		defer cancel()
		result, err := Failover(failoverContext, options.Dir)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "failover: %s killed and fenced, %s promoted; writes accepted %.2fs after the kill\n", result.From, result.To, result.KillToWritable.Seconds())
		return nil
	}
	actionContext, cancel := context.WithTimeout(ctx, options.ReadyTimeout+DefaultStopTimeout)
	defer cancel()
	began := time.Now()
	result, err := Operate(actionContext, options.Dir, options.Component, options.Action)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "%s: %s in %.1fs, now %s\n", result.Name, options.Action, time.Since(began).Seconds(), result.Status())
	return nil
}

// LinkOptions say what ControlLink does: list the links of a stack started
// with proxies, heal one, or put a fault on one. The messages of validate
// name the `ledgerproof link` flags that set each field.
type LinkOptions struct {
	// Dir is the stack directory.
	Dir string
	// Link is one of Links; empty lists the links.
	Link string
	// Heal removes the link's fault.
	Heal bool
	// Fault is put on the link when Heal is false.
	Fault LinkFault
}

// validate rejects a heal or a fault without a link, and a heal with a
// fault.
func (o LinkOptions) validate() error {
	switch {
	case o.Link == "":
		if o.Heal || o.Fault.Kind != "" {
			return errors.New("--heal and --fault need --link")
		}
	case o.Heal:
		if o.Fault.Kind != "" {
			return errors.New("give either --heal or --fault")
		}
	}
	return nil
}

// ControlLink lists the links of the stack in options.Dir on w, or heals
// or faults options.Link and says so on w.
func ControlLink(ctx context.Context, options LinkOptions, w io.Writer) error {
	if err := options.validate(); err != nil {
		return err
	}
	switch {
	case options.Link == "":
		return printLinks(ctx, w, options.Dir)
	case options.Heal:
		if err := HealLink(ctx, options.Dir, options.Link); err != nil {
			return err
		}
		fmt.Fprintf(w, "%s: healed\n", options.Link)
		return nil
	default:
		if err := Link(ctx, options.Dir, options.Link, options.Fault); err != nil {
			return err
		}
		fmt.Fprintf(w, "%s: %s\n", options.Link, options.Fault)
		return nil
	}
}

// printLinks prints a table of the links of the stack in dir, their state
// and their toxics.
func printLinks(ctx context.Context, w io.Writer, dir string) error {
	states, err := LinkStates(ctx, dir)
	if err != nil {
		return err
	}
	table := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(table, "LINK\tLISTEN\tUPSTREAM\tSTATE\tTOXICS")
	for _, state := range states {
		condition := "up"
		if !state.Enabled {
			condition = "cut"
		}
		var toxics []string
		for _, toxic := range state.Toxics {
			var attributes []string
			for name, value := range toxic.Attributes {
				attributes = append(attributes, fmt.Sprintf("%s=%d", name, value))
			}
			sort.Strings(attributes)
			toxics = append(toxics, fmt.Sprintf("%s/%s(%s)", toxic.Type, toxic.Stream, strings.Join(attributes, ",")))
		}
		fmt.Fprintf(table, "%s\t%s\t%s\t%s\t%s\n", state.Name, state.Listen, state.Upstream, condition, strings.Join(toxics, " "))
	}
	return table.Flush()
}
