// gate.js — the CI correctness gate: about a minute of mixed money operations at a fixed arrival rate. The run
// fails (k6 exits 99) when unknown outcomes or unexpected rejections exceed ERROR_RATE_MAX, when the p95 accept
// latency exceeds P95_MS, or when k6 could not keep the rate (dropped iterations). The money itself is judged
// afterwards by the auditor over the journal in RUN_DIR.
//
//   bin/k6 run -e RUN_DIR=reports/runs/x scenarios/gate.js
//
// Parameters (environment, defaults in docs/scenarios.md): BASE_URL, RATE (200/s), DURATION (60s), ACCOUNTS,
// FUNDING, RUN_DIR, WAIT, SEED, MIX, AMOUNT_MIN/AMOUNT_MAX, DUPLICATE_RATE, MISUSE_RATE, ERROR_RATE_MAX, P95_MS.

import { createClient, finishRun, prepareRun } from './lib/client.js';
import { loadConfig, vusFor } from './lib/config.js';
import { SUMMARY_TREND_STATS, loadThresholds } from './lib/metrics.js';
import { mixedOperation } from './lib/workload.js';

const config = loadConfig({ rate: 200, duration: '60s' });
const client = createClient(config);
const vus = vusFor(config.rate, config);

export const options = {
  scenarios: {
    gate: {
      executor: 'constant-arrival-rate',
      rate: config.rate,
      timeUnit: '1s',
      duration: config.duration,
      preAllocatedVUs: vus.preAllocatedVUs,
      maxVUs: vus.maxVUs,
      gracefulStop: '30s',
    },
  },
  thresholds: loadThresholds(config, { scenario: 'gate' }),
  summaryTrendStats: SUMMARY_TREND_STATS,
  setupTimeout: '5m',
};

export function setup() {
  return prepareRun(client, config, { name: 'gate' });
}

export default function (data) {
  mixedOperation(client, config, data, { ownerSlots: vus.preAllocatedVUs });
}

export function teardown(data) {
  finishRun(data);
}
