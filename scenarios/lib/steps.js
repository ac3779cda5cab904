// The step plan of capacity.js and its per-step report.
//
// Each step is its own k6 scenario (ramping-arrival-rate: a short ramp from the previous step's rate, then a hold
// at the step's rate), started one after the other with startTime. One scenario per step, rather than stages of
// a single scenario, because k6 tags `dropped_iterations` only with the scenario: it is the one way to know in
// which step the load generator fell behind. Every metric sample of a step carries `scenario:<step name>` (and
// the scenario tag `step:<rate>`), and per-step thresholds on those submetrics make their values appear in the
// summary data that handleSummary reads. Steps do not overlap (a gap of STEP_GAP, which is also the graceful
// stop), so k6 reuses one pool of VUs for all of them.
//
// What a step records is kept small, because k6 is on the measured machine (docs/performance.md, "k6's own cost
// in the capacity scenario"): the operation count and settle latency come from the extension's own
// ledger_operations and ledger_settle_duration (the same values as the scenario_* duplicates of metrics.js); per
// operation the script adds only scenario_accept_duration (its acceptMs also times operations the gateway never
// accepted, which ledger_accept_duration leaves out) and, for the rare error or rejection, capacity_errors and
// scenario_rejections.

import { Counter } from 'k6/metrics';
import { envDuration, envInt, envList, formatDuration, parseDurationSeconds, vusFor } from './config.js';
import { acceptDuration, isError, rejections } from './metrics.js';

/** stepErrors counts the errors of capacity.js (isError, and calls that threw), tagged outcome and reason. */
export const stepErrors = new Counter('capacity_errors');

/** recordStepResult is capacity.js's recordResult: accept latency per operation, the rest only when not ok. */
export function recordStepResult(result) {
  acceptDuration.add(result.acceptMs);
  if (result.outcome === 'ok') {
    return;
  }
  if (isError(result)) {
    stepErrors.add(1, { kind: result.kind, outcome: result.outcome, reason: result.reason || 'none' });
  }
  if (result.outcome === 'fail') {
    rejections.add(1, { kind: result.kind, reason: result.reason || 'unknown' });
  }
}

/** recordStepException counts a money call that threw as an error; the caller rethrows. */
export function recordStepException(kind) {
  stepErrors.add(1, { kind, outcome: 'exception', reason: 'exception' });
}

/** DEFAULT_STEPS are the capacity steps (TPS); those above TARGET_TPS are cut and TARGET_TPS is always the last. */
export const DEFAULT_STEPS = '1000,1500,2000,2500,3000,3600,5000,7500,10000';

function pad(number) {
  return String(number).padStart(2, '0');
}

/** buildStepPlan turns TARGET_TPS, STEPS, STEP_DURATION, RAMP_DURATION and STEP_GAP into the list of steps. */
export function buildStepPlan(config) {
  const rates = envList('STEPS', DEFAULT_STEPS).map((text) => {
    const rate = Number(text);
    if (!Number.isSafeInteger(rate) || rate < 1) {
      throw new Error(`STEPS: "${text}" is not a positive integer`);
    }
    return rate;
  });
  const target = config.targetTps;
  const kept = Array.from(new Set(rates.filter((rate) => rate < target))).sort((a, b) => a - b);
  kept.push(target);

  const holdSeconds = parseDurationSeconds(envDuration('STEP_DURATION', '30s'), 'STEP_DURATION');
  const rampSeconds = parseDurationSeconds(envDuration('RAMP_DURATION', '5s'), 'RAMP_DURATION');
  const gapSeconds = parseDurationSeconds(envDuration('STEP_GAP', '5s'), 'STEP_GAP');
  const maxSteps = envInt('MAX_STEPS', 20, { min: 1, max: 100 });
  if (kept.length > maxSteps) {
    throw new Error(`${kept.length} steps planned, more than MAX_STEPS=${maxSteps}`);
  }

  // WARM_UP (default 10s, 0s: none) comes before the first step: see warmUpScenario.
  let startSeconds = warmUpSeconds();
  // RAMP_FROM is the rate the first step ramps from (default 0). A driver that runs one step per k6 process
  // (`ledgerproof capacity`) passes the previous step's rate, so each step ramps as it would in one long run.
  let previousRate = envInt('RAMP_FROM', 0, { min: 0 });
  return kept.map((rate, index) => {
    const vus = vusFor(rate, config);
    const step = {
      name: `step_${pad(index + 1)}_${rate}`,
      rate,
      previousRate,
      startSeconds,
      rampSeconds,
      holdSeconds,
      gapSeconds,
      preAllocatedVUs: vus.preAllocatedVUs,
      maxVUs: vus.maxVUs,
      // Iterations the executor should start: the ramp is linear from the previous rate.
      expectedIterations: Math.round(((previousRate + rate) / 2) * rampSeconds + rate * holdSeconds),
    };
    startSeconds += rampSeconds + holdSeconds + gapSeconds;
    previousRate = rate;
    return step;
  });
}

/** warmUpSeconds is WARM_UP in seconds: how long before the first step the VUs are warmed (0: not at all). */
export function warmUpSeconds() {
  return parseDurationSeconds(envDuration('WARM_UP', '10s'), 'WARM_UP');
}

/**
 * warmUpScenario runs one iteration (of the script's `warmUp` export) on each of the VUs the steps pre-allocate,
 * before the first step (null when WARM_UP is 0s). A VU's first iteration is expensive for k6: it decodes
 * setup()'s data (every account with its token) into the VU's own JS objects. Without the warm-up, the VUs of
 * a step met that cost in their first iterations, hundreds of them within the step's first seconds: a burst of
 * k6 CPU that the system under test paid for in latency, and dropped iterations at rates the system holds.
 * k6 reuses the warm VUs for the steps (the scenarios do not overlap: gracefulStop 0s, the first step starts
 * when the warm-up's maxDuration ends).
 */
export function warmUpScenario(plan) {
  const seconds = warmUpSeconds();
  if (seconds <= 0 || plan.length === 0) {
    return null;
  }
  return {
    executor: 'per-vu-iterations',
    vus: Math.max(...plan.map((step) => step.preAllocatedVUs)),
    iterations: 1,
    maxDuration: formatDuration(seconds),
    gracefulStop: '0s',
    startTime: '0s',
    exec: 'warmUp',
  };
}

/** stepScenario is the k6 scenario of one step. */
export function stepScenario(step) {
  const stages = [];
  if (step.rampSeconds > 0) {
    stages.push({ duration: formatDuration(step.rampSeconds), target: step.rate });
  }
  stages.push({ duration: formatDuration(step.holdSeconds), target: step.rate });
  return {
    executor: 'ramping-arrival-rate',
    startRate: step.rampSeconds > 0 ? step.previousRate : step.rate,
    timeUnit: '1s',
    stages,
    preAllocatedVUs: step.preAllocatedVUs,
    maxVUs: step.maxVUs,
    startTime: formatDuration(step.startSeconds),
    gracefulStop: formatDuration(step.gapSeconds),
    tags: { step: String(step.rate) },
  };
}

/** stepMetricNames are the submetrics the report reads, one set per step. */
export function stepMetricNames(step) {
  const tag = `{scenario:${step.name}}`;
  return {
    iterations: `iterations${tag}`,
    dropped: `dropped_iterations${tag}`,
    errors: `capacity_errors${tag}`,
    accept: `scenario_accept_duration${tag}`,
    settle: `ledger_settle_duration${tag}`,
    operations: `ledger_operations${tag}`,
  };
}

/**
 * stepThresholds defines a threshold on every per-step submetric, so that k6 computes them and they appear in
 * the summary. They are informational (always true) except for steps at or below `requiredTps` (REQUIRE_TPS),
 * which must hold: then a system that does not sustain the required rate fails the run (exit code 99). The error
 * bound is on a count (errors < ERROR_RATE_MAX × the step's planned operations): the same as the rate bound
 * whenever the step ran its plan, and a step that did not has dropped iterations, which fail it anyway.
 */
export function stepThresholds(plan, criteria, requiredTps) {
  const thresholds = {};
  for (const step of plan) {
    const names = stepMetricNames(step);
    const strict = requiredTps !== undefined && step.rate <= requiredTps;
    thresholds[names.iterations] = ['count>=0'];
    thresholds[names.operations] = ['count>=0'];
    thresholds[names.dropped] = [strict ? 'count==0' : 'count>=0'];
    thresholds[names.errors] = [strict ? `count<${Math.max(1, criteria.errorRateMax * step.expectedIterations)}` : 'count>=0'];
    thresholds[names.accept] = [strict ? `p(95)<${criteria.p95Ms}` : 'p(95)>=0'];
    thresholds[names.settle] = ['p(95)>=0'];
  }
  return thresholds;
}

function metricValue(summaryData, name, field) {
  const metric = summaryData.metrics && summaryData.metrics[name];
  if (!metric || !metric.values || typeof metric.values[field] !== 'number') {
    return undefined;
  }
  return metric.values[field];
}

/**
 * capacityReport computes, per step, the achieved rate (completed iterations over the step's ramp plus hold; the
 * ramp starts from the previous step's rate, so compare with expectedIterations, the "of plan" column), p95
 * accept latency, error rate and dropped iterations, whether the step held (errors < errorRateMax, p95 < p95Ms,
 * no dropped iterations, at least one iteration), and the highest step held with every step below it held too.
 */
export function capacityReport(summaryData, plan, criteria) {
  const steps = plan.map((step) => {
    const names = stepMetricNames(step);
    const iterations = metricValue(summaryData, names.iterations, 'count') || 0;
    const dropped = metricValue(summaryData, names.dropped, 'count') || 0;
    const operations = metricValue(summaryData, names.operations, 'count') || 0;
    const errorCount = metricValue(summaryData, names.errors, 'count') || 0;
    // Errors over operations (a call that threw is an error without a ledger_operations sample).
    const errorRate = operations + errorCount > 0 ? errorCount / Math.max(operations, errorCount) : undefined;
    const p95Ms = metricValue(summaryData, names.accept, 'p(95)');
    const latency = (name, field) => {
      const value = metricValue(summaryData, name, field);
      return value === undefined ? null : value;
    };
    const seconds = step.rampSeconds + step.holdSeconds;
    const reasons = [];
    if (iterations === 0) {
      reasons.push('no iterations');
    }
    if (dropped > 0) {
      reasons.push(`${dropped} dropped`);
    }
    if (errorRate === undefined || errorRate >= criteria.errorRateMax) {
      reasons.push(errorRate === undefined ? 'no error data' : `errors ${(errorRate * 100).toFixed(3)}%`);
    }
    if (p95Ms === undefined || p95Ms >= criteria.p95Ms) {
      reasons.push(p95Ms === undefined ? 'no latency data' : `p95 ${p95Ms.toFixed(1)} ms`);
    }
    return {
      step: step.name,
      targetTps: step.rate,
      achievedTps: seconds > 0 ? iterations / seconds : 0,
      expectedIterations: step.expectedIterations,
      iterations,
      operations,
      errors: errorCount,
      dropped,
      errorRate: errorRate === undefined ? null : errorRate,
      p95AcceptMs: p95Ms === undefined ? null : p95Ms,
      p50AcceptMs: latency(names.accept, 'med'),
      p99AcceptMs: latency(names.accept, 'p(99)'),
      p50SettleMs: latency(names.settle, 'med'),
      p95SettleMs: latency(names.settle, 'p(95)'),
      p99SettleMs: latency(names.settle, 'p(99)'),
      startSeconds: step.startSeconds,
      rampSeconds: step.rampSeconds,
      holdSeconds: step.holdSeconds,
      held: reasons.length === 0,
      reasons,
    };
  });
  let highestHeld = null;
  for (const step of steps) {
    if (!step.held) {
      break;
    }
    highestHeld = step.targetTps;
  }
  const anyHeld = steps.filter((step) => step.held).map((step) => step.targetTps);
  return {
    criteria,
    steps,
    highestHeldTps: highestHeld,
    highestAnyHeldTps: anyHeld.length > 0 ? anyHeld[anyHeld.length - 1] : null,
  };
}

function column(text, width) {
  const value = String(text);
  return value.length >= width ? value : ' '.repeat(width - value.length) + value;
}

/** formatCapacityReport renders the report as a fixed-width table for the terminal. */
export function formatCapacityReport(report) {
  const lines = [];
  lines.push(
    `capacity: a step holds with errors < ${(report.criteria.errorRateMax * 100).toFixed(3)}%, ` +
      `p95 accept < ${report.criteria.p95Ms} ms and no dropped iterations`,
  );
  lines.push(
    [
      column('target/s', 9),
      column('achieved/s', 11),
      column('iterations', 11),
      column('of plan', 8),
      column('dropped', 8),
      column('errors', 9),
      column('p95 ms', 9),
      '  verdict',
    ].join(''),
  );
  for (const step of report.steps) {
    lines.push(
      [
        column(step.targetTps, 9),
        column(step.achievedTps.toFixed(1), 11),
        column(step.iterations, 11),
        column(step.expectedIterations > 0 ? `${((100 * step.iterations) / step.expectedIterations).toFixed(1)}%` : '-', 8),
        column(step.dropped, 8),
        column(step.errorRate === null ? '-' : `${(step.errorRate * 100).toFixed(3)}%`, 9),
        column(step.p95AcceptMs === null ? '-' : step.p95AcceptMs.toFixed(1), 9),
        step.held ? '  held' : `  NOT HELD (${step.reasons.join(', ')})`,
      ].join(''),
    );
  }
  lines.push(
    report.highestHeldTps === null
      ? 'highest step held: none'
      : `highest step held: ${report.highestHeldTps}/s` +
          (report.highestAnyHeldTps !== report.highestHeldTps
            ? ` (a higher step, ${report.highestAnyHeldTps}/s, held after a failed one)`
            : ''),
  );
  return lines.join('\n');
}
