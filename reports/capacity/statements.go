package capacity

import (
	"context"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
)

// statementWindow measures what Postgres spent its time on between start and
// write, from pg_stat_statements (the capacity stack preloads it when
// profiling).
type statementWindow struct {
	url     string
	started time.Time
}

func startStatements(ctx context.Context, url string) (*statementWindow, error) {
	connection, err := pgx.Connect(ctx, url)
	if err != nil {
		return nil, err
	}
	defer connection.Close(ctx)
	if _, err := connection.Exec(ctx, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements"); err != nil {
		return nil, err
	}
	if _, err := connection.Exec(ctx, "SELECT pg_stat_statements_reset()"); err != nil {
		return nil, err
	}
	if _, err := connection.Exec(ctx, "SELECT pg_stat_reset_shared('wal')"); err != nil {
		return nil, err
	}
	return &statementWindow{url: url, started: time.Now()}, nil
}

// write saves the statements by total time (execution and planning), most
// expensive first, with calls, rows, time and WAL per call (WAL records, full
// page images and bytes: a full page image is the first change to a page
// after a checkpoint, 8 KB, so an index keyed by a random value writes many),
// after the WAL the whole server wrote in the window (pg_stat_wal).
func (w *statementWindow) write(ctx context.Context, path string) error {
	connection, err := pgx.Connect(ctx, w.url)
	if err != nil {
		return err
	}
	defer connection.Close(ctx)
	var walRecords, walFPI int64
	var walBytes float64
	if err := connection.QueryRow(ctx, "SELECT wal_records, wal_fpi, wal_bytes::float8 FROM pg_stat_wal").Scan(&walRecords, &walFPI, &walBytes); err != nil {
		return err
	}
	rows, err := connection.Query(ctx, `
		SELECT calls, rows, total_exec_time, total_plan_time, wal_records, wal_fpi, wal_bytes::float8, query
		FROM pg_stat_statements
		WHERE calls > 0
		ORDER BY total_exec_time + total_plan_time DESC
		LIMIT 25`)
	if err != nil {
		return err
	}
	var b strings.Builder
	seconds := time.Since(w.started).Seconds()
	fmt.Fprintf(&b, "WAL over %.1f s (pg_stat_wal): %.0f records/s, %.0f full page images/s, %.2f MB/s\n\n",
		seconds, float64(walRecords)/seconds, float64(walFPI)/seconds, walBytes/1e6/seconds)
	fmt.Fprintf(&b, "pg_stat_statements over %.1f s, by total time (execution + planning)\n\n", seconds)
	table := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(table, "calls/s\trows/call\texec ms\tplan ms\tµs/call\t% window\tWAL rec/call\tFPI/call\tWAL B/call\t query")
	for rows.Next() {
		var calls, rowCount, records, fpi int64
		var exec, plan, bytes float64
		var query string
		if err := rows.Scan(&calls, &rowCount, &exec, &plan, &records, &fpi, &bytes, &query); err != nil {
			return err
		}
		query = strings.Join(strings.Fields(query), " ")
		if len(query) > 140 {
			query = query[:140] + "…"
		}
		fmt.Fprintf(table, "%.0f\t%.1f\t%.0f\t%.0f\t%.1f\t%.1f%%\t%.1f\t%.2f\t%.0f\t %s\n", float64(calls)/seconds, float64(rowCount)/float64(calls),
			exec, plan, 1000*(exec+plan)/float64(calls), 100*(exec+plan)/1000/seconds,
			float64(records)/float64(calls), float64(fpi)/float64(calls), bytes/float64(calls), query)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	table.Flush()
	return os.WriteFile(path, []byte(b.String()), 0o644)
}
