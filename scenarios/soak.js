// soak.js — a long steady rate (default 500/s for 30 minutes) to find what only time shows: leaks, growing
// latency, consumer lag that never recovers, idempotency records expiring, journal back-pressure. Same
// thresholds as the gate, plus a p(99) bound (P99_MS, default 1000 ms) so a slow drift is caught.
//
//   bin/k6 run -e RUN_DIR=reports/runs/soak -e DURATION=2h scenarios/soak.js

import { createClient, finishRun, prepareRun } from './lib/client.js';
import { envFloat, loadConfig, vusFor } from './lib/config.js';
import { SUMMARY_TREND_STATS, loadThresholds } from './lib/metrics.js';
import { mixedOperation } from './lib/workload.js';

const config = loadConfig({ rate: 500, duration: '30m' });
const p99Ms = envFloat('P99_MS', 1000, { min: 1 });
const client = createClient(config);
const vus = vusFor(config.rate, config);

const thresholds = loadThresholds(config, { scenario: 'soak' });
thresholds.scenario_accept_duration = (thresholds.scenario_accept_duration || []).concat([`p(99)<${p99Ms}`]);

export const options = {
  scenarios: {
    soak: {
      executor: 'constant-arrival-rate',
      rate: config.rate,
      timeUnit: '1s',
      duration: config.duration,
      preAllocatedVUs: vus.preAllocatedVUs,
      maxVUs: vus.maxVUs,
      gracefulStop: '30s',
    },
  },
  thresholds,
  summaryTrendStats: SUMMARY_TREND_STATS,
  setupTimeout: '5m',
};

export function setup() {
  return prepareRun(client, config, { name: 'soak' });
}

export default function (data) {
  mixedOperation(client, config, data, { ownerSlots: vus.preAllocatedVUs });
}

export function teardown(data) {
  finishRun(data);
}
