package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// clockTicksPerSecond is USER_HZ, the unit of the CPU times in /proc/PID/stat: 100 on every Linux architecture
// Go supports.
const clockTicksPerSecond = 100

// Bounds on a child process's output: lines longer are cut, and only the last lines are kept for messages.
const (
	maxOutputLineBytes = 1 << 20
	keptOutputLines    = 30
)

// stopGrace is how long a child has to exit after SIGTERM before it is killed (SIGKILL, by its PID).
const stopGrace = 10 * time.Second

// childSpec is a process the benchmark starts: the benchmark's own executable with args.
type childSpec struct {
	name       string
	executable string
	args       []string
	// timeout bounds the process's life; past it the process is stopped (SIGTERM, then SIGKILL).
	timeout time.Duration
	// startPrefix, when set, starts the output line at which the process's CPU so far is read: what it used
	// before (start-up, setup) is not counted.
	startPrefix string
	// resultPrefix, when set, starts the output line kept as the process's result.
	resultPrefix string
	// verbose, when set, receives every output line, prefixed with the name.
	verbose io.Writer
}

// child is a started process.
type child struct {
	spec     childSpec
	command  *exec.Cmd
	cancel   context.CancelFunc
	readDone chan struct{}

	mutex      sync.Mutex
	tail       []string
	started    bool
	startCPU   time.Duration
	startAt    time.Time
	resultLine string
	lineSeen   chan string // each line, for waitForLine; never blocks the reader (buffered, dropped when full)
}

// childRun is what a finished child did.
type childRun struct {
	// cpuAtStart is the process's CPU (user+system) when it printed its start line; started says it did.
	started    bool
	cpuAtStart time.Duration
	startAt    time.Time
	// cpuTotal is its CPU from its rusage at exit; exitAt when it was seen to exit.
	cpuTotal time.Duration
	exitAt   time.Time
	exitCode int
	result   string
	tail     string
}

// startChild starts a process. Its stdout and stderr are read line by line; it is stopped by its PID.
func startChild(ctx context.Context, spec childSpec) (*child, error) {
	ctx, cancel := context.WithTimeout(ctx, spec.timeout)
	command := exec.CommandContext(ctx, spec.executable, spec.args...)
	command.Cancel = func() error { return command.Process.Signal(syscall.SIGTERM) }
	command.WaitDelay = stopGrace
	reader, writer, err := os.Pipe()
	if err != nil {
		cancel()
		return nil, fmt.Errorf("%s: %w", spec.name, err)
	}
	command.Stdout, command.Stderr = writer, writer
	if err := command.Start(); err != nil {
		cancel()
		reader.Close()
		writer.Close()
		return nil, fmt.Errorf("%s: start: %w", spec.name, err)
	}
	writer.Close() // the child holds its own copy; EOF comes when it exits
	c := &child{spec: spec, command: command, cancel: cancel, readDone: make(chan struct{}), lineSeen: make(chan string, 64)}
	go c.read(reader)
	return c, nil
}

// read takes the child's output lines until it exits.
func (c *child) read(reader *os.File) {
	defer close(c.readDone)
	defer reader.Close()
	scanner := bufio.NewScanner(reader)
	scanner.Buffer(make([]byte, 64<<10), maxOutputLineBytes)
	for scanner.Scan() {
		line := scanner.Text()
		c.mutex.Lock()
		if c.spec.startPrefix != "" && !c.started && strings.HasPrefix(line, c.spec.startPrefix) {
			// Read at once: the time between the line and this read is CPU the load already spends.
			if cpu, err := processCPU(c.command.Process.Pid); err == nil {
				c.started, c.startCPU, c.startAt = true, cpu, time.Now()
			}
		}
		if c.spec.resultPrefix != "" && strings.HasPrefix(line, c.spec.resultPrefix) {
			c.resultLine = strings.TrimPrefix(line, c.spec.resultPrefix)
		}
		c.tail = append(c.tail, line)
		if len(c.tail) > keptOutputLines {
			c.tail = c.tail[len(c.tail)-keptOutputLines:]
		}
		c.mutex.Unlock()
		if c.spec.verbose != nil {
			fmt.Fprintf(c.spec.verbose, "  [%s] %s\n", c.spec.name, line)
		}
		select {
		case c.lineSeen <- line:
		default:
		}
	}
}

// waitForLine waits until the child prints a line starting with prefix, exits, or timeout passes.
func (c *child) waitForLine(prefix string, timeout time.Duration) (string, error) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		select {
		case line := <-c.lineSeen:
			if strings.HasPrefix(line, prefix) {
				return line, nil
			}
		case <-c.readDone:
			return "", fmt.Errorf("%s exited before saying %q:\n%s", c.spec.name, prefix, c.outputTail())
		case <-timer.C:
			return "", fmt.Errorf("%s did not say %q within %s:\n%s", c.spec.name, prefix, timeout, c.outputTail())
		}
	}
}

func (c *child) outputTail() string {
	c.mutex.Lock()
	defer c.mutex.Unlock()
	return "  " + strings.Join(c.tail, "\n  ")
}

// wait waits for the child to exit (at most its timeout, then it is stopped) and returns what it did. An exit
// code other than 0 is not an error here: the caller judges it.
func (c *child) wait() (childRun, error) {
	<-c.readDone
	err := c.command.Wait()
	exitAt := time.Now()
	c.cancel()
	state := c.command.ProcessState
	if state == nil {
		return childRun{}, fmt.Errorf("%s: %w", c.spec.name, err)
	}
	var exitError *exec.ExitError
	if err != nil && !errors.As(err, &exitError) {
		return childRun{}, fmt.Errorf("%s: %w", c.spec.name, err)
	}
	c.mutex.Lock()
	defer c.mutex.Unlock()
	return childRun{started: c.started, cpuAtStart: c.startCPU, startAt: c.startAt,
		cpuTotal: state.UserTime() + state.SystemTime(), exitAt: exitAt, exitCode: state.ExitCode(),
		result: c.resultLine, tail: "  " + strings.Join(c.tail, "\n  ")}, nil
}

// stop ends the child (SIGTERM to its PID, SIGKILL after stopGrace) and waits for it.
func (c *child) stop() {
	c.cancel()
	<-c.readDone
	_ = c.command.Wait()
}

// processCPU is a process's user+system CPU so far, from /proc/PID/stat (fields 14 and 15, in clock ticks).
// The command name may hold spaces and parentheses, so fields are counted after its last ')'.
func processCPU(pid int) (time.Duration, error) {
	content, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	end := bytes.LastIndexByte(content, ')')
	if end < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	// fields[0] is field 3 (state): field n is fields[n-3].
	fields := strings.Fields(string(content[end+1:]))
	if len(fields) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(fields))
	}
	var ticks uint64
	for _, field := range fields[11:13] {
		value, err := strconv.ParseUint(field, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
		}
		ticks += value
	}
	return time.Duration(ticks) * time.Second / clockTicksPerSecond, nil
}
