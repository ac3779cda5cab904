// retry-storm.js — the idempotency contract under pressure: DUPLICATE_RATE (default 3%, up to 50%) of money
// operations are sent twice with the same key and body, concurrently (a double click) or after a delay (a load
// balancer replay) — DUPLICATE_MODE=mixed (default) alternates by VU — plus MISUSE_RATE (default 1%, up to 50%)
// of keys reused with a different amount, and an aggressive retry policy: many attempts, short backoff, a short
// request timeout, so that retries overlap requests still in flight. Duplicates and misuse are answered 409/422
// by design, so http_req_failed is not a threshold here; the auditor checks exactly-once and key-contract over
// the journal, which records every duplicate and misuse.
//
//   bin/k6 run -e RUN_DIR=reports/runs/storm -e DUPLICATE_RATE=0.5 scenarios/retry-storm.js

import { createClient, finishRun, prepareRun } from './lib/client.js';
import { loadConfig, vusFor } from './lib/config.js';
import { SUMMARY_TREND_STATS, loadThresholds } from './lib/metrics.js';
import { mixedOperation } from './lib/workload.js';

const config = loadConfig({
  duplicateRate: 0.03,
  duplicateRateMax: 0.5,
  duplicateMode: 'mixed',
  misuseRate: 0.01,
  misuseRateMax: 0.5,
  retryAttempts: 8,
  retryBackoff: '10ms',
  retryMaxBackoff: '200ms',
  retryJitter: 0.9,
  timeout: '2s',
  wait: '1s',
  errorRateMax: 0.01,
  p95Ms: 500,
});
const client = createClient(config);
const vus = vusFor(config.rate, config);

export const options = {
  scenarios: {
    retry_storm: {
      executor: 'constant-arrival-rate',
      rate: config.rate,
      timeUnit: '1s',
      duration: config.duration,
      preAllocatedVUs: vus.preAllocatedVUs,
      maxVUs: vus.maxVUs,
      gracefulStop: '30s',
    },
  },
  thresholds: loadThresholds(config, { httpFailed: false, scenario: 'retry_storm' }),
  summaryTrendStats: SUMMARY_TREND_STATS,
  setupTimeout: '5m',
};

export function setup() {
  return prepareRun(client, config, { name: 'retry-storm' });
}

export default function (data) {
  mixedOperation(client, config, data, { ownerSlots: vus.preAllocatedVUs });
}

export function teardown(data) {
  finishRun(data);
}
