package ledger

import "github.com/ledgerproof/ledgerproof/load/history"

// The journal moved to load/history, which the Go load engine writes through too; these names keep the extension
// building until it is removed.
type (
	// Entry is history.Entry.
	Entry = history.Entry
	// Journal is history.Journal.
	Journal = history.Journal
	// JournalStats is history.JournalStats.
	JournalStats = history.JournalStats
)

// JournalVersion is history.JournalVersion.
const JournalVersion = history.JournalVersion

// OpenJournal is history.OpenJournal.
func OpenJournal(path string, bufferEntries int) (*Journal, error) {
	return history.OpenJournal(path, bufferEntries)
}
