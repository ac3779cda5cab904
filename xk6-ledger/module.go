package ledger

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/grafana/sobek"
	"go.k6.io/k6/js/common"
	"go.k6.io/k6/js/modules"
)

// journalFileName is the journal's name inside a run directory (JOURNAL.md).
const journalFileName = "journal.jsonl"

// journalBufferEntries bounds the journal's queue: 16384 entries is a few MiB and several seconds of
// 10,000 operations per second before a VU blocks on a stalled disk.
const journalBufferEntries = 16384

// RootModule is the module k6/x/ledger registered with k6: one per k6 process. It holds what all VUs of the
// process share: the journal, the per-account sequence counters and the operation counter.
type RootModule struct {
	process *process
}

var _ modules.Module = (*RootModule)(nil)

// New returns the root module of k6/x/ledger.
func New() *RootModule {
	return &RootModule{process: newProcess(time.Now)}
}

// NewModuleInstance is called once per VU that imports k6/x/ledger, in its init context.
func (root *RootModule) NewModuleInstance(vu modules.VU) modules.Instance {
	instance := &ModuleInstance{vu: vu, process: root.process}
	if env := vu.InitEnv(); env != nil && env.Registry != nil {
		registered, err := registerMetrics(env.Registry)
		if err != nil {
			common.Throw(vu.Runtime(), err)
		}
		instance.metrics = registered
	}
	return instance
}

// ModuleInstance is k6/x/ledger as one VU sees it.
type ModuleInstance struct {
	vu      modules.VU
	process *process
	metrics *ledgerMetrics
}

var _ modules.Instance = (*ModuleInstance)(nil)

// Exports returns the module's exports: Client, closeJournal and journalStats, both named and as the default
// export's properties.
func (mi *ModuleInstance) Exports() modules.Exports {
	named := map[string]any{
		"Client":       mi.newClientObject,
		"closeJournal": mi.closeJournal,
		"journalStats": mi.journalStats,
	}
	return modules.Exports{Default: named, Named: named}
}

// closeJournal is the JS closeJournal(): it flushes and closes the process's journal.
func (mi *ModuleInstance) closeJournal() (any, error) {
	journal := mi.process.journals.current()
	if journal == nil {
		return nil, nil
	}
	if err := journal.Close(); err != nil {
		return nil, fmt.Errorf("closeJournal: %w", err)
	}
	return map[string]any{"path": journal.Path(), "operations": journal.Stats().Operations}, nil
}

// journalStats is the JS journalStats().
func (mi *ModuleInstance) journalStats() map[string]any {
	var stats JournalStats
	if journal := mi.process.journals.current(); journal != nil {
		stats = journal.Stats()
	}
	return map[string]any{"operations": stats.Operations, "bytes": stats.Bytes, "blockedNs": stats.BlockedNs}
}

// newClientObject is the JS constructor new Client(options).
func (mi *ModuleInstance) newClientObject(call sobek.ConstructorCall) *sobek.Object {
	rt := mi.vu.Runtime()
	if mi.metrics == nil {
		common.Throw(rt, fmt.Errorf("new Client: k6/x/ledger was not initialised with a metrics registry"))
	}
	options, err := parseClientOptions(rt, call.Argument(0), environmentRunDir(rt))
	if err != nil {
		common.Throw(rt, fmt.Errorf("new Client: %w", err))
	}
	client := newClient(mi.vu, mi.process, mi.metrics, options)
	return client.jsObject(rt)
}

// environmentRunDir reads LEDGER_RUN_DIR as the script sees it (__ENV, so "k6 run -e LEDGER_RUN_DIR=..." works),
// or from the process environment when __ENV is absent (module tests).
func environmentRunDir(rt *sobek.Runtime) string {
	if env := rt.Get("__ENV"); env != nil && !common.IsNullish(env) {
		if value := env.ToObject(rt).Get("LEDGER_RUN_DIR"); value != nil && !common.IsNullish(value) {
			return value.String()
		}
		return ""
	}
	return os.Getenv("LEDGER_RUN_DIR")
}

// process is the state shared by all VUs of one k6 process.
type process struct {
	clock    func() time.Time
	pid      string
	journals journalHolder
	// operations numbers the logical operations of the process, for their ids "<pid>-<n>".
	operations atomic.Int64
	// sequences counts the money operations issued per ordering account (JOURNAL.md, field seq).
	sequenceMutex sync.Mutex
	sequences     map[int64]int64
	// defaultSeed seeds clients without a seed option; chosen once so that it can be printed once.
	defaultSeed int64
	// seedsLogged remembers the seeds already printed.
	seedsLogged sync.Map
	// prepareBatches numbers the prepareAccounts calls, to keep their emails apart.
	prepareBatches atomic.Int64
	// emailRun makes the emails of prepareAccounts unique per run.
	emailRun string
}

func newProcess(clock func() time.Time) *process {
	now := clock()
	return &process{
		clock:       clock,
		pid:         strconv.Itoa(os.Getpid()),
		sequences:   make(map[int64]int64),
		defaultSeed: now.UnixNano(),
		emailRun:    strconv.FormatInt(now.UnixNano()/int64(time.Millisecond), 36) + strconv.FormatInt(int64(os.Getpid()), 36),
	}
}

// nextOperationID returns a new operation id, unique within the process.
func (p *process) nextOperationID() string {
	return p.pid + "-" + strconv.FormatInt(p.operations.Add(1), 10)
}

// nextSequence returns the next issue sequence number of an account, starting at 1.
func (p *process) nextSequence(accountID int64) int64 {
	p.sequenceMutex.Lock()
	defer p.sequenceMutex.Unlock()
	p.sequences[accountID]++
	return p.sequences[accountID]
}

// journalHolder opens the process's one journal lazily, on the first operation to record, so that a script
// that never issues an operation (k6 inspect, archive) creates no file.
type journalHolder struct {
	mutex   sync.Mutex
	journal *Journal
	runDir  string
}

// get returns the journal of runDir, opening it on first use. One process writes one journal: clients that
// name different run directories are refused.
func (h *journalHolder) get(runDir string) (*Journal, error) {
	h.mutex.Lock()
	defer h.mutex.Unlock()
	clean := filepath.Clean(runDir)
	if h.journal != nil {
		if h.runDir != clean {
			return nil, fmt.Errorf("this k6 process already journals to %s; a client cannot journal to %s too (one run directory per process)", h.runDir, clean)
		}
		return h.journal, nil
	}
	journal, err := OpenJournal(filepath.Join(clean, journalFileName), journalBufferEntries)
	if err != nil {
		return nil, err
	}
	h.journal, h.runDir = journal, clean
	return journal, nil
}

// current returns the open (or closed) journal, or nil when none was opened.
func (h *journalHolder) current() *Journal {
	h.mutex.Lock()
	defer h.mutex.Unlock()
	return h.journal
}
