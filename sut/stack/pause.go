package stack

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// Actions that freeze and thaw a component, for chaos plans. They are not
// part of Operate because they leave no state in the stack file: a paused
// process is alive (its identity check passes) and `ledgerproof stack` shows
// it running.
const (
	ActionPause  = "pause"
	ActionResume = "resume"
)

// maxDescendants bounds the process tree Pause and Resume signal; a stack
// component has a handful of children (a postmaster's backends) at most a few
// hundred.
const maxDescendants = 4096

// Pause freezes one component of the stack in dir with SIGSTOP: the process
// and every descendant (a postmaster's backends put themselves in sessions of
// their own, so signalling the process group would miss them). Connections
// stay open and nothing answers on them — what a GC pause, a stuck VM or a
// network black hole looks like to clients. Only the process whose identity
// (PID and start time) matches the stack file, and processes descended from
// it, are signalled.
func Pause(ctx context.Context, dir, name string) (*Component, error) {
	return signalTree(ctx, dir, name, syscall.SIGSTOP)
}

// Resume thaws a component frozen by Pause with SIGCONT, descendants first
// so that the parent finds its children running. Resuming a component that
// is not paused is harmless.
func Resume(ctx context.Context, dir, name string) (*Component, error) {
	return signalTree(ctx, dir, name, syscall.SIGCONT)
}

// signalTree sends sig to the component's recorded process and its
// descendants.
func signalTree(ctx context.Context, dir, name string, sig syscall.Signal) (*Component, error) {
	component, err := loadComponent(dir, name)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return component, err
	}
	if !component.Alive() {
		return component, fmt.Errorf("%s %s: %w", signalVerb(sig), name, ErrNotRunning)
	}
	descendants := processDescendants(component.PID)
	targets := []int{component.PID}
	if sig == syscall.SIGCONT {
		// Children first, so a parent woken up never sees them frozen.
		targets = append(descendants, component.PID)
	} else {
		targets = append(targets, descendants...)
	}
	for _, pid := range targets {
		var err error
		if pid == component.PID {
			err = SignalProcess(component.PID, component.StartTime, sig)
		} else {
			err = syscall.Kill(pid, sig)
			if err == syscall.ESRCH {
				err = nil // a backend that exited meanwhile
			}
		}
		if err != nil {
			return component, fmt.Errorf("%s %s (PID %d): %w", signalVerb(sig), name, pid, err)
		}
	}
	return component, nil
}

func signalVerb(sig syscall.Signal) string {
	if sig == syscall.SIGCONT {
		return ActionResume
	}
	return ActionPause
}

// processDescendants lists the live descendants of pid, found through the
// parent PID (field 4) of every /proc/PID/stat, bounded by maxDescendants.
func processDescendants(pid int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	children := map[int][]int{}
	for _, entry := range entries {
		child, err := strconv.Atoi(entry.Name())
		if err != nil {
			continue
		}
		parent, ok := parentPID(child)
		if ok {
			children[parent] = append(children[parent], child)
		}
	}
	var descendants []int
	queue := []int{pid}
	for len(queue) > 0 && len(descendants) < maxDescendants {
		next := queue[0]
		queue = queue[1:]
		for _, child := range children[next] {
			descendants = append(descendants, child)
			queue = append(queue, child)
		}
	}
	return descendants
}

// parentPID reads the parent PID of a live (non-zombie) process.
func parentPID(pid int) (int, bool) {
	content, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	text := string(content)
	end := strings.LastIndexByte(text, ')')
	if end < 0 {
		return 0, false
	}
	fields := strings.Fields(text[end+1:])
	// fields[0] is field 3 (state), fields[1] field 4 (ppid).
	if len(fields) < 2 || fields[0] == "Z" || fields[0] == "X" {
		return 0, false
	}
	parent, err := strconv.Atoi(fields[1])
	return parent, err == nil
}
