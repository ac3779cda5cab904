// capacity.js — how many operations per second does the system sustain? Arrival-rate steps up to TARGET_TPS
// (default 3600; run with TARGET_TPS=10000 for the high target): 1000, 1500, 2000, 2500, 3000, 3600, 5000, 7500, 10000 (STEPS),
// cut at TARGET_TPS, each held STEP_DURATION (30s) after a RAMP_DURATION (5s) ramp. handleSummary prints, per
// step, the achieved rate, p95 accept latency, error rate and dropped iterations, and the highest step held
// (errors < ERROR_RATE_MAX = 0.1%, p95 accept < P95_MS = 250 ms, no dropped iterations); it writes the same as
// JSON to RUN_DIR/capacity.json, with k6's summary data in RUN_DIR/k6-summary.json.
//
// A capacity run passes whatever the result (it measures); with REQUIRE_TPS=3600 every step up to 3600/s must
// hold or k6 exits 99.
//
//   bin/k6 run -e RUN_DIR=reports/runs/cap -e TARGET_TPS=10000 scenarios/capacity.js

import { createClient, finishRun, prepareRun } from './lib/client.js';
import { envInt, loadConfig } from './lib/config.js';
import { SUMMARY_TREND_STATS } from './lib/metrics.js';
import { failedThresholdLines, overviewLines, runFiles } from './lib/summary.js';
import {
  buildStepPlan,
  capacityReport,
  formatCapacityReport,
  recordStepException,
  recordStepResult,
  stepScenario,
  stepThresholds,
  warmUpScenario,
} from './lib/steps.js';
import { mixedOperation, workloadFor } from './lib/workload.js';

const config = loadConfig();
const requiredTps = envInt('REQUIRE_TPS', undefined, { min: 1 });
const criteria = { errorRateMax: config.errorRateMax, p95Ms: config.p95Ms };
const plan = buildStepPlan(config);
const client = createClient(config);

const scenarios = {};
const ownerSlotsByStep = {};
for (const step of plan) {
  scenarios[step.name] = Object.assign(stepScenario(step), { exec: 'step' });
  ownerSlotsByStep[step.name] = step.preAllocatedVUs;
}
const warmUpPlan = warmUpScenario(plan);
if (warmUpPlan !== null) {
  scenarios.warm_up = warmUpPlan;
}

export const options = {
  scenarios,
  thresholds: stepThresholds(plan, criteria, requiredTps),
  summaryTrendStats: SUMMARY_TREND_STATS,
  setupTimeout: '10m',
};

export function setup() {
  console.log(`capacity steps: ${plan.map((step) => `${step.rate}/s`).join(', ')}`);
  const data = prepareRun(client, config, { name: 'capacity', steady: false });
  // `ledgerproof capacity` waits for this line to time its CPU profiles.
  console.log('capacity: load starts');
  return data;
}

// recordStepResult records less than the other scenarios' recordResult (steps.js): k6's CPU is the machine's.
// With one step (`ledgerproof capacity` runs one k6 per step) the owner slots are a number: looking the scenario's
// name up costs k6 an object per iteration (exec.scenario builds its whole info), about 5% of its CPU.
const workloadOptions = {
  ownerSlots: plan.length === 1 ? plan[0].preAllocatedVUs : (scenarioName) => ownerSlotsByStep[scenarioName],
  record: recordStepResult,
  recordException: recordStepException,
};

// warmUp is each VU's first iteration (WARM_UP): k6 decodes setup()'s data for the VU before calling it, and the
// VU's workload generator is built; nothing is sent.
export function warmUp(data) {
  workloadFor(config, data, workloadOptions);
}

export function step(data) {
  // The step's scenario tags (scenario, step) are on every sample already, the extension's included.
  mixedOperation(client, config, data, workloadOptions);
}

export default step;

export function teardown(data) {
  finishRun(data);
}

export function handleSummary(data) {
  const report = capacityReport(data, plan, criteria);
  // When the steps' clock started (the end of setup(), epoch ms): each step's window is loadStartedAtMs +
  // startSeconds, so a driver can match the steps with what it sampled meanwhile (CPU per process).
  report.loadStartedAtMs = data.setup_data && data.setup_data.startedAt !== undefined ? data.setup_data.startedAt : null;
  const failed = failedThresholdLines(data);
  const text = [
    '',
    formatCapacityReport(report),
    '',
    'totals:',
    ...overviewLines(data, [
      'iterations',
      'dropped_iterations',
      'http_reqs',
      'http_req_failed',
      'ledger_operations',
      'capacity_errors',
      'ledger_unknown_outcomes',
      'scenario_accept_duration',
      'ledger_settle_duration',
      'scenario_rejections',
    ]),
    failed.length > 0 ? 'thresholds:\n' + failed.join('\n') : 'thresholds: all passed',
    '',
  ].join('\n');
  return Object.assign(
    { stdout: text },
    runFiles(config.runDir || __ENV.LEDGER_RUN_DIR, {
      'capacity.json': JSON.stringify(report, null, 2),
      'k6-summary.json': JSON.stringify(data, null, 2),
    }),
  );
}
