package reports

import (
	"fmt"
	"strings"
	"time"
)

// FaultWindow is a span of the run during which a fault was in effect, as
// the report shades it: from the fault's action to the end of the action
// that undid it (a start includes the wait until the process was ready).
type FaultWindow struct {
	// Target is the concrete target (the chaos log's resolved target when
	// it differs from the plan's).
	Target string `json:"target"`
	// Action is the fault (kill, stop, pause, restart, failover,
	// crash-point, link:<fault>); Recovery the action that ended it
	// (start, resume, heal), empty when nothing did.
	Action   string `json:"action"`
	Recovery string `json:"recovery,omitempty"`
	// Label names the window in the legend.
	Label string `json:"label"`
	// StartSeconds and EndSeconds count from the run's origin (the
	// report's time zero).
	StartSeconds float64 `json:"start_seconds"`
	EndSeconds   float64 `json:"end_seconds"`
	// Marker is an instant rather than a span (a failover or an armed
	// crash point that no start followed); OpenEnded a fault that nothing
	// undid before the log ended (it is drawn to the end of the run).
	Marker    bool `json:"marker,omitempty"`
	OpenEnded bool `json:"open_ended,omitempty"`
	// Effect is what the fault was seen to do (nil: no journal to tell).
	Effect *FaultEffect `json:"effect,omitempty"`
}

// faultActions describe how an action of the chaos log opens or closes a
// window.
const (
	actionKill       = "kill"
	actionStop       = "stop"
	actionPause      = "pause"
	actionStart      = "start"
	actionResume     = "resume"
	actionRestart    = "restart"
	actionFailover   = "failover"
	actionLink       = "link"
	actionCrashPoint = "crash-point"
	actionCommand    = "command"
	linkFaultHeal    = "heal"
)

// commandLabelLength bounds the command shown in a window's label.
const commandLabelLength = 60

var faultVerbs = map[string]string{
	actionKill: "killed", actionStop: "stopped", actionPause: "paused", actionRestart: "restarted",
	actionFailover: "failed over", actionCrashPoint: "crash point armed",
}

// faultWindows pairs the chaos log's faults with their recoveries:
// kill/stop/pause with the next start/resume of the same target, a link
// fault with the link's next heal, failover and crash-point with the next
// start of the target (else a marker), restart is a window of its own
// duration; a command step with a recover command is closed by its
// recovery (or the runner's cleanup running it), one without is a window of
// its own duration. Failed actions open nothing. endSeconds closes windows
// left open.
func faultWindows(records []chaosRecord, origin time.Time, endSeconds float64) []FaultWindow {
	offset := func(t time.Time) float64 { return round(t.Sub(origin).Seconds(), 3) }
	var windows []FaultWindow
	open := map[string]int{} // target → index in windows
	for _, record := range records {
		if record.Result != "" && record.Result != "ok" {
			continue
		}
		target := record.Target
		if record.Resolved != "" {
			target = record.Resolved
		}
		at := offset(record.Time)
		done := round(at+float64(record.DurationMs)/1000, 3)
		switch record.Action {
		case actionKill, actionStop, actionPause, actionFailover, actionCrashPoint:
			if target == "" && record.Action == actionFailover {
				target = "postgres"
			}
			if _, already := open[target]; already {
				continue
			}
			label := fmt.Sprintf("%s %s", target, faultVerbs[record.Action])
			if point := record.Params["point"]; record.Action == actionCrashPoint && point != "" {
				label += " (" + point + ")"
			}
			open[target] = len(windows)
			windows = append(windows, FaultWindow{Target: target, Action: record.Action, Label: label, StartSeconds: at, EndSeconds: at})
		case actionStart, actionResume:
			index, ok := open[target]
			if !ok {
				continue
			}
			delete(open, target)
			windows[index].EndSeconds = done
			windows[index].Recovery = record.Action
		case actionCommand:
			fault, recovering := strings.CutSuffix(record.Source, " recovery")
			if !recovering {
				fault, recovering = strings.CutPrefix(record.Source, "cleanup of ")
			}
			if recovering {
				if index, ok := open["command "+fault]; ok {
					delete(open, "command "+fault)
					windows[index].EndSeconds = done
					windows[index].Recovery = actionCommand
				}
				continue
			}
			run := record.Params["run"]
			if runes := []rune(run); len(runes) > commandLabelLength {
				run = string(runes[:commandLabelLength]) + "..."
			}
			window := FaultWindow{Target: target, Action: actionCommand, Label: target + ": " + run, StartSeconds: at, EndSeconds: done}
			if record.Params["recover"] != "" {
				open["command "+record.Source] = len(windows)
			} else {
				window.Recovery = actionCommand
			}
			windows = append(windows, window)
		case actionRestart:
			windows = append(windows, FaultWindow{Target: target, Action: actionRestart, Recovery: actionRestart,
				Label: target + " restarted", StartSeconds: at, EndSeconds: done})
		case actionLink:
			fault := record.Params["fault"]
			key := "link " + target
			if fault == linkFaultHeal {
				if index, ok := open[key]; ok {
					delete(open, key)
					windows[index].EndSeconds = done
					windows[index].Recovery = linkFaultHeal
				}
				continue
			}
			if _, already := open[key]; already {
				continue
			}
			label := fmt.Sprintf("link %s: %s", target, fault)
			if latency := record.Params["latency"]; latency != "" {
				label += " " + latency
			}
			open[key] = len(windows)
			windows = append(windows, FaultWindow{Target: target, Action: actionLink + ":" + fault, Label: label, StartSeconds: at, EndSeconds: at})
		}
	}
	for _, index := range open {
		window := &windows[index]
		switch window.Action {
		case actionFailover, actionCrashPoint:
			window.Marker = true
		default:
			window.OpenEnded = true
			window.EndSeconds = max(endSeconds, window.StartSeconds)
		}
	}
	return windows
}
