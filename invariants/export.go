package invariants

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// The files of the ledger export format (docs/audit.md).
const (
	AccountsFile     = "accounts.jsonl"
	TransactionsFile = "transactions.jsonl"
	PostingsFile     = "postings.jsonl"
	// DeadLettersFile is optional: without it the export does not say
	// which records the system set aside, and the audit says "not
	// available" (never 0).
	DeadLettersFile = "dead_letters.jsonl"
)

// ExportSource reads a ledger from the export format: a directory with
// accounts.jsonl, transactions.jsonl and postings.jsonl (postings in
// ascending id order), and optionally dead_letters.jsonl, one JSON object
// per line.
type ExportSource struct {
	Dir string
}

// Describe implements Source.
func (e ExportSource) Describe() string { return "export " + e.Dir }

// Scan implements Source.
func (e ExportSource) Scan(ctx context.Context, visitor Visitor) error {
	var account Account
	if err := readLines(ctx, filepath.Join(e.Dir, AccountsFile), func(line []byte) error {
		account = Account{}
		if err := json.Unmarshal(line, &account); err != nil {
			return err
		}
		return visitor.Account(&account)
	}); err != nil {
		return err
	}
	var transaction Transaction
	if err := readLines(ctx, filepath.Join(e.Dir, TransactionsFile), func(line []byte) error {
		transaction = Transaction{}
		if err := json.Unmarshal(line, &transaction); err != nil {
			return err
		}
		if transaction.ID == "" {
			return errors.New("transaction without an id")
		}
		return visitor.Transaction(&transaction)
	}); err != nil {
		return err
	}
	var posting Posting
	if err := readLines(ctx, filepath.Join(e.Dir, PostingsFile), func(line []byte) error {
		posting = Posting{}
		if err := json.Unmarshal(line, &posting); err != nil {
			return err
		}
		return visitor.Posting(&posting)
	}); err != nil {
		return err
	}
	if visitor.DeadLetters == nil {
		return nil
	}
	path := filepath.Join(e.Dir, DeadLettersFile)
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return visitor.DeadLetters(false, "not available: the export has no "+DeadLettersFile+" (optional in the export format)")
	} else if err != nil {
		return fmt.Errorf("read export: %w", err)
	}
	if err := visitor.DeadLetters(true, ""); err != nil {
		return err
	}
	if visitor.DeadLetter == nil {
		return nil
	}
	var letter DeadLetter
	return readLines(ctx, path, func(line []byte) error {
		letter = DeadLetter{}
		if err := json.Unmarshal(line, &letter); err != nil {
			return err
		}
		return visitor.DeadLetter(&letter)
	})
}

// readLines calls each for every non-empty line of a JSON Lines file,
// naming the file and line number in any error.
func readLines(ctx context.Context, path string, each func(line []byte) error) error {
	file, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("read export: %w", err)
	}
	defer file.Close()
	reader := bufio.NewReaderSize(file, 1<<20)
	for number := 1; ; number++ {
		line, err := reader.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			return fmt.Errorf("%s line %d: longer than %d bytes", path, number, reader.Size())
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("read %s: %w", path, err)
		}
		if trimmed := bytes.TrimSpace(line); len(trimmed) > 0 {
			if eachErr := each(trimmed); eachErr != nil {
				return fmt.Errorf("%s line %d: %w", path, number, eachErr)
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if number%65536 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

// ExportWriter writes a ledger in the export format. Use Visitor() as the
// visitor of a Source's Scan, then Close.
type ExportWriter struct {
	dir      string
	files    [4]*os.File
	writers  [4]*bufio.Writer
	encoders [4]*json.Encoder
	// Counts counts the accounts, transactions and postings written.
	Counts [3]int64
	// DeadLetters counts the dead letters written; DeadLettersWritten says
	// whether dead_letters.jsonl was (the source knew its dead letters).
	DeadLetters        int64
	DeadLettersWritten bool
}

// deadLettersTable is the index of dead_letters.jsonl in an ExportWriter's
// files, created only when the source has dead letters to tell.
const deadLettersTable = 3

// CreateExport creates dir (if needed) and the three export files in it,
// truncating any that exist, and removes a dead_letters.jsonl left by an
// earlier export (the source may not know its dead letters).
func CreateExport(dir string) (*ExportWriter, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create export: %w", err)
	}
	if err := os.Remove(filepath.Join(dir, DeadLettersFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("create export: %w", err)
	}
	w := &ExportWriter{dir: dir}
	for i, name := range []string{AccountsFile, TransactionsFile, PostingsFile} {
		file, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			w.abort()
			return nil, fmt.Errorf("create export: %w", err)
		}
		w.files[i] = file
		w.writers[i] = bufio.NewWriterSize(file, 1<<20)
		w.encoders[i] = json.NewEncoder(w.writers[i])
	}
	return w, nil
}

func (w *ExportWriter) abort() {
	for _, file := range w.files {
		if file != nil {
			file.Close()
		}
	}
}

func (w *ExportWriter) write(table int, value any) error {
	w.Counts[table]++
	return w.encoders[table].Encode(value)
}

// Visitor writes every row it is given, and dead_letters.jsonl when the
// source knows its dead letters (each record cut to MaxDeadLetterRawBytes).
func (w *ExportWriter) Visitor() Visitor {
	return Visitor{
		Account:     func(a *Account) error { return w.write(0, a) },
		Transaction: func(t *Transaction) error { return w.write(1, t) },
		Posting:     func(p *Posting) error { return w.write(2, p) },
		DeadLetters: func(available bool, _ string) error {
			if !available || w.files[deadLettersTable] != nil {
				return nil
			}
			file, err := os.Create(filepath.Join(w.dir, DeadLettersFile))
			if err != nil {
				return fmt.Errorf("create export: %w", err)
			}
			w.files[deadLettersTable] = file
			w.writers[deadLettersTable] = bufio.NewWriterSize(file, 1<<16)
			w.encoders[deadLettersTable] = json.NewEncoder(w.writers[deadLettersTable])
			w.DeadLettersWritten = true
			return nil
		},
		DeadLetter: func(d *DeadLetter) error {
			if w.files[deadLettersTable] == nil {
				return errors.New("a dead letter before the source said it had any")
			}
			letter := *d
			if letter.RawBytes < int64(len(letter.Raw)) {
				letter.RawBytes = int64(len(letter.Raw))
			}
			if len(letter.Raw) > MaxDeadLetterRawBytes {
				letter.Raw = letter.Raw[:MaxDeadLetterRawBytes]
			}
			w.DeadLetters++
			return w.encoders[deadLettersTable].Encode(&letter)
		},
	}
}

// Close flushes, syncs and closes the files.
func (w *ExportWriter) Close() error {
	var errs []error
	for i := range w.files {
		if w.files[i] == nil {
			continue
		}
		if err := w.writers[i].Flush(); err != nil {
			errs = append(errs, err)
		}
		if err := w.files[i].Sync(); err != nil {
			errs = append(errs, err)
		}
		if err := w.files[i].Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("write export: %w", err)
	}
	return nil
}

// Export copies a ledger from source into dir in the export format and
// returns the number of accounts, transactions and postings written.
func Export(ctx context.Context, source Source, dir string) ([3]int64, error) {
	writer, err := CreateExport(dir)
	if err != nil {
		return [3]int64{}, err
	}
	if err := source.Scan(ctx, writer.Visitor()); err != nil {
		writer.abort()
		return writer.Counts, fmt.Errorf("export %s: %w", source.Describe(), err)
	}
	return writer.Counts, writer.Close()
}

// CheckExportFresh refuses an export older than the run's load: one of its
// files last written before the run's newest journal line (the journals'
// modification time, the load's end) is an export of some other moment's
// ledger, perhaps of an earlier run, and auditing it would blame the system
// for operations it never saw. An export copied with its old modification
// times kept (cp -p, rsync -t) is refused too: write it after the load.
func CheckExportFresh(exportDir, runDir string) error {
	journals, err := journalFiles(runDir)
	if err != nil {
		return nil // no journal: the audit says so itself
	}
	var loadEnd time.Time
	for _, journal := range journals {
		if info, err := os.Stat(journal); err == nil && info.ModTime().After(loadEnd) {
			loadEnd = info.ModTime()
		}
	}
	for _, name := range []string{AccountsFile, TransactionsFile, PostingsFile} {
		info, err := os.Stat(filepath.Join(exportDir, name))
		if err != nil {
			continue // reading it says what is missing
		}
		if info.ModTime().Before(loadEnd) {
			return fmt.Errorf("the ledger export %s was written at %s, before this run's load ended (%s): it is not the ledger after this load. Write the export after the load (run --export-command does)",
				filepath.Join(exportDir, name), info.ModTime().UTC().Format(time.RFC3339), loadEnd.UTC().Format(time.RFC3339))
		}
	}
	return nil
}
