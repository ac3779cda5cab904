// Helpers for a scenario's handleSummary. A script that exports handleSummary replaces k6's own end-of-test
// text (k6's textSummary lives in a remote jslib, which scenarios must not fetch), so these render a compact
// overview from the summary data (k6's legacy summary format, the default handed to handleSummary) and write
// the machine-readable files into the run directory.

function formatValue(metric) {
  const values = metric.values || {};
  switch (metric.type) {
    case 'rate':
      return `${((values.rate || 0) * 100).toFixed(3)}% (${values.passes || 0} of ${(values.passes || 0) + (values.fails || 0)})`;
    case 'counter':
      return `${values.count} (${(values.rate || 0).toFixed(1)}/s)`;
    case 'trend': {
      const parts = ['avg', 'med', 'p(95)', 'p(99)', 'max']
        .filter((field) => typeof values[field] === 'number')
        .map((field) => `${field}=${values[field].toFixed(1)}`);
      return parts.join(' ') + (metric.contains === 'time' ? ' ms' : '');
    }
    default:
      return `${values.value} (min ${values.min}, max ${values.max})`;
  }
}

/** overviewLines lists the main metrics of a run, skipping per-step submetrics (the step table shows those). */
export function overviewLines(summaryData, names) {
  const lines = [];
  for (const name of names) {
    const metric = summaryData.metrics && summaryData.metrics[name];
    if (metric) {
      lines.push(`  ${name}: ${formatValue(metric)}`);
    }
  }
  return lines;
}

/** thresholdLines lists every failed threshold; an empty list means all passed. */
export function failedThresholdLines(summaryData) {
  const lines = [];
  const metrics = summaryData.metrics || {};
  for (const name of Object.keys(metrics).sort()) {
    const thresholds = metrics[name].thresholds || {};
    for (const source of Object.keys(thresholds)) {
      if (!thresholds[source].ok) {
        lines.push(`  FAILED ${name}: ${source}`);
      }
    }
  }
  return lines;
}

/**
 * runFiles returns the handleSummary entries that write `files` (name → text) into RUN_DIR, or nothing when no
 * run directory is set. The extension creates RUN_DIR when it opens the journal.
 */
export function runFiles(runDir, files) {
  const result = {};
  if (!runDir) {
    return result;
  }
  const directory = runDir.replace(/\/+$/, '');
  for (const name of Object.keys(files)) {
    result[`${directory}/${name}`] = files[name];
  }
  return result;
}
