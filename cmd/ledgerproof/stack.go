package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"github.com/ledgerproof/ledgerproof/sut/stack"
)

// stackCommand shows the local stack, or applies one action to one
// component. Positional arguments are not accepted by the CLI's flag
// parsing, so the action and the component are flags:
//
//	ledgerproof stack --dir D                                  # show
//	ledgerproof stack --dir D --action kill --component broker # act
func stackCommand() (*flag.FlagSet, func(ctx context.Context, flags *flag.FlagSet) error) {
	flags := flag.NewFlagSet("stack", flag.ContinueOnError)
	dir := flags.String("dir", stack.DefaultConfig().Dir, "stack directory")
	action := flags.String("action", "", "stop (clean shutdown), kill (SIGKILL), start, or restart a --component; failover (kill the Postgres primary, promote the standby); empty shows the stack")
	component := flags.String("component", "", "component to act on: postgres, redis, broker, gateway-N, worker-N")
	readyTimeout := flags.Duration("ready-timeout", stack.DefaultReadyTimeout, "how long start/restart wait for readiness")
	asJSON := flags.Bool("json", false, "show the stack file as JSON, with each component's live state")
	flags.Usage = func() {
		fmt.Fprintln(flags.Output(), "usage: ledgerproof stack [--dir D] [--json]\n       ledgerproof stack [--dir D] --action stop|kill|start|restart --component NAME\n       ledgerproof stack [--dir D] --action failover\n\nflags:")
		flags.PrintDefaults()
	}
	return flags, func(ctx context.Context, flags *flag.FlagSet) error {
		if *action == "" {
			if *component != "" {
				return errors.New("--component needs --action")
			}
			return showStack(*dir, *asJSON)
		}
		if *action == "failover" {
			if *component != "" {
				return errors.New("--action failover takes no --component: it kills the primary and promotes the standby")
			}
			failoverContext, cancel := context.WithTimeout(ctx, *readyTimeout)
			defer cancel()
			result, err := stack.Failover(failoverContext, *dir)
			if err != nil {
				return err
			}
			fmt.Printf("failover: %s killed and fenced, %s promoted; writes accepted %.2fs after the kill\n", result.From, result.To, result.KillToWritable.Seconds())
			return nil
		}
		if *component == "" {
			return fmt.Errorf("--action %s needs --component", *action)
		}
		actionContext, cancel := context.WithTimeout(ctx, *readyTimeout+stack.DefaultStopTimeout)
		defer cancel()
		began := time.Now()
		result, err := stack.Operate(actionContext, *dir, *component, *action)
		if err != nil {
			return err
		}
		fmt.Printf("%s: %s in %.1fs, now %s\n", result.Name, *action, time.Since(began).Seconds(), result.Status())
		return nil
	}
}

// showStack prints the components and their live state.
func showStack(dir string, asJSON bool) error {
	file, err := stack.Status(dir)
	if err != nil {
		return err
	}
	if asJSON {
		type liveComponent struct {
			*stack.Component
			Live string `json:"live"`
		}
		live := struct {
			*stack.File
			Components []liveComponent `json:"components"`
		}{File: file}
		for _, component := range file.Components {
			live.Components = append(live.Components, liveComponent{component, component.Status()})
		}
		encoder := json.NewEncoder(os.Stdout)
		encoder.SetIndent("", "  ")
		return encoder.Encode(live)
	}
	fmt.Printf("stack %s (started %s)\n", file.Dir, file.StartedAt.Format(time.RFC3339))
	table := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(table, "NAME\tSTATE\tENDPOINT\tLOG")
	for _, component := range file.Components {
		fmt.Fprintf(table, "%s\t%s\t%s\t%s\n", component.Name, component.Status(), component.Endpoint, component.LogFile)
	}
	return table.Flush()
}
