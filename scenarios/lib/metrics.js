// Scenario-side metrics and thresholds. They are derived from the OperationResult every money call returns
// (xk6-ledger/index.d.ts), which is the extension's contract; thresholds are set on these rather than on the
// extension's own metric names, because k6 refuses to start when a threshold names a metric that does not exist.
// The same latency bound is also set on the extension's own `ledger_accept_duration` (EXTENSION_THRESHOLDS=0
// leaves it out, for a build of the extension without that metric).
//
// Custom metrics must be created in the init context: importing this module does that.

import { Counter, Rate, Trend } from 'k6/metrics';

/** operationErrors: per money operation, 1 when it is an error: outcome info, an unexpected fail, or an exception. */
export const operationErrors = new Rate('scenario_errors');
/** unknownOutcomes: per money operation, 1 when the outcome is `info` (timeout, 5xx, not final within the wait). */
export const unknownOutcomes = new Rate('scenario_unknown_outcomes');
/** acceptDuration: OperationResult.acceptMs, invoke to the gateway's first answer (includes the wait). */
export const acceptDuration = new Trend('scenario_accept_duration', true);
/** settleDuration: OperationResult.settleMs, invoke to a final outcome, when there was one. */
export const settleDuration = new Trend('scenario_settle_duration', true);
/** operations: money operations by kind and outcome. */
export const operations = new Counter('scenario_operations');
/** rejections: `fail` outcomes by reason (insufficient_funds is expected under random load). */
export const rejections = new Counter('scenario_rejections');

/** EXPECTED_REJECTIONS are the fail reasons that are a correct answer to the load, not an error. */
export const EXPECTED_REJECTIONS = ['insufficient_funds'];

/** isError classifies one OperationResult for the error-rate thresholds. */
export function isError(result) {
  if (result.outcome === 'info') {
    return true;
  }
  return result.outcome === 'fail' && !EXPECTED_REJECTIONS.includes(result.reason);
}

/** recordResult adds one money operation's result to the scenario metrics; `tags` are extra sample tags. */
export function recordResult(result, tags = {}) {
  const kindTags = Object.assign({ kind: result.kind }, tags);
  operations.add(1, Object.assign({ outcome: result.outcome }, kindTags));
  operationErrors.add(isError(result), kindTags);
  unknownOutcomes.add(result.outcome === 'info', kindTags);
  if (typeof result.acceptMs === 'number') {
    acceptDuration.add(result.acceptMs, kindTags);
  }
  if (typeof result.settleMs === 'number') {
    settleDuration.add(result.settleMs, kindTags);
  }
  if (result.outcome === 'fail') {
    rejections.add(1, Object.assign({ reason: result.reason || 'unknown' }, kindTags));
  }
}

/** recordException counts a money call that threw (a harness or argument bug) as an error, then the caller rethrows. */
export function recordException(kind, tags = {}) {
  const kindTags = Object.assign({ kind }, tags);
  operations.add(1, Object.assign({ outcome: 'exception' }, kindTags));
  operationErrors.add(true, kindTags);
}

/** SUMMARY_TREND_STATS adds p(99) and count to k6's default trend columns. */
export const SUMMARY_TREND_STATS = ['avg', 'min', 'med', 'max', 'p(90)', 'p(95)', 'p(99)', 'count'];

/**
 * loadThresholds are the thresholds of the steady-load scenarios:
 * - scenario_errors rate < ERROR_RATE_MAX (default 0.1%): unknown outcomes and unexpected rejections;
 * - scenario_accept_duration p(95) < P95_MS (default 250 ms);
 * - dropped_iterations count == 0: the load generator kept the rate (else the run measured less than it claims);
 * - http_req_failed rate < ERROR_RATE_MAX, only when no duplicates or key misuse are injected (those are answered
 *   409/422 by design and would count as failed requests).
 * Options: { dropped: false } to drop the dropped-iterations bound, { p95: false } to drop the latency bound,
 * { httpFailed: false } to drop http_req_failed, { scenario: name } to bound the extension's
 * ledger_accept_duration of that scenario only (EXTENSION_THRESHOLDS, default on).
 */
export function loadThresholds(config, options = {}) {
  const thresholds = {
    scenario_errors: [`rate<${config.errorRateMax}`],
  };
  if (options.p95 !== false) {
    thresholds.scenario_accept_duration = [`p(95)<${config.p95Ms}`];
    if (config.extensionThresholds) {
      // Restricted to the load's scenario: setup()'s funding deposits are timed by the extension too.
      const name = options.scenario ? `ledger_accept_duration{scenario:${options.scenario}}` : 'ledger_accept_duration';
      thresholds[name] = [`p(95)<${config.p95Ms}`];
    }
  }
  if (options.dropped !== false) {
    thresholds.dropped_iterations = ['count==0'];
  }
  if (config.duplicateRate === 0 && config.misuseRate === 0 && options.httpFailed !== false) {
    thresholds.http_req_failed = [`rate<${config.errorRateMax}`];
  }
  return thresholds;
}
