// hot-accounts.js — skew: sources and destinations drawn from a Zipf distribution (ZIPF_EXPONENT, default 1.1)
// over ACCOUNTS, so a few accounts — hence a few partitions, since the partition is a hash of the ordering
// account — carry most of the load, and many operations on one account are in flight at once. Ownership is off
// by default here (OWNERSHIP=0): concurrent debits of a hot account are the point; the auditor orders them by
// the journal's seq and invoke/complete times. Latency of the hot and cold accounts is shown apart (tag heat).
//
// The reference gateway rate-limits each user (1000/s per gateway by default): at high RATE the hottest account
// meets 429s, which the client retries; setup() warns when the expected rate of the hottest account exceeds it.
//
//   bin/k6 run -e RUN_DIR=reports/runs/hot -e ZIPF_EXPONENT=1.5 scenarios/hot-accounts.js

import { createClient, finishRun, prepareRun } from './lib/client.js';
import { envInt, loadConfig, vusFor } from './lib/config.js';
import { SUMMARY_TREND_STATS, loadThresholds } from './lib/metrics.js';
import { ZipfDistribution } from './lib/random.js';
import { mixedOperation } from './lib/workload.js';

const config = loadConfig({ rate: 500, ownership: false });
const hotAccounts = envInt('HOT_ACCOUNTS', Math.max(1, Math.ceil(config.accounts / 100)), { min: 1 });
const userRateLimit = envInt('USER_RATE_LIMIT', 1000, { min: 1 });
const client = createClient(config);
const vus = vusFor(config.rate, config);
const workloadOptions = { accountDistribution: 'zipf', ownerSlots: vus.preAllocatedVUs };

const thresholds = loadThresholds(config, { scenario: 'hot_accounts' });
for (const heat of ['hot', 'cold']) {
  thresholds[`scenario_accept_duration{heat:${heat}}`] = ['p(95)>=0'];
  thresholds[`scenario_operations{heat:${heat}}`] = ['count>=0'];
}

export const options = {
  scenarios: {
    hot_accounts: {
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
  const distribution = new ZipfDistribution(config.accounts, config.zipfExponent);
  const hottestRate = config.rate * distribution.share(1);
  console.log(
    `hot-accounts: zipf exponent ${config.zipfExponent}: the hottest account gets ` +
      `${(distribution.share(1) * 100).toFixed(1)}% of sources (~${hottestRate.toFixed(0)}/s), ` +
      `the ${hotAccounts} hottest ${(distribution.share(hotAccounts) * 100).toFixed(1)}%`,
  );
  if (hottestRate > userRateLimit * config.baseURLs.length) {
    console.warn(
      `hot-accounts: ~${hottestRate.toFixed(0)}/s on one user exceeds the per-user rate limit ` +
        `(${userRateLimit}/s per gateway, USER_RATE_LIMIT) × ${config.baseURLs.length} gateway(s): expect 429s and retries`,
    );
  }
  return prepareRun(client, config, { name: 'hot-accounts' });
}

function heatOf(operation, generator) {
  return { heat: generator.picker.rankOf(operation.source) < hotAccounts ? 'hot' : 'cold' };
}

export default function (data) {
  mixedOperation(client, config, data, workloadOptions, heatOf);
}

export function teardown(data) {
  finishRun(data);
}
