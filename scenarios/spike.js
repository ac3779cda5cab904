// spike.js — bursts: from a calm BASE_RATE (500/s) to SPIKE_RATE (12000/s) and back, SPIKES times (2). What must
// hold is the money (the auditor's verdict over the journal) and recovery: errors stay below ERROR_RATE_MAX
// (1% by default here: a spike may shed load with 429/503, which the client retries), and latency in the calm
// phases is shown apart from the spikes (metrics tagged phase:calm / phase:spike). Dropped iterations during a
// spike are a limit of the load generator or of maxVUs, reported, not a threshold.
//
//   bin/k6 run -e RUN_DIR=reports/runs/spike scenarios/spike.js

import exec from 'k6/execution';
import { createClient, finishRun, prepareRun } from './lib/client.js';
import { envDuration, envInt, loadConfig, parseDurationSeconds, vusFor } from './lib/config.js';
import { SUMMARY_TREND_STATS, loadThresholds } from './lib/metrics.js';
import { mixedOperation } from './lib/workload.js';

const config = loadConfig({ errorRateMax: 0.01 });
const baseRate = envInt('BASE_RATE', 500, { min: 1 });
const spikeRate = envInt('SPIKE_RATE', 12000, { min: 1 });
const spikes = envInt('SPIKES', 2, { min: 1, max: 20 });
const rampDuration = envDuration('RAMP_DURATION', '10s');
const spikeDuration = envDuration('SPIKE_DURATION', '30s');
const calmDuration = envDuration('CALM_DURATION', '60s');
const client = createClient(config);
const vus = vusFor(Math.max(baseRate, spikeRate), config);

// The phase of each stage, so that samples can be tagged calm/ramp/spike by elapsed time.
const stages = [{ duration: calmDuration, target: baseRate, phase: 'calm' }];
for (let i = 0; i < spikes; i++) {
  stages.push({ duration: rampDuration, target: spikeRate, phase: 'ramp' });
  stages.push({ duration: spikeDuration, target: spikeRate, phase: 'spike' });
  stages.push({ duration: rampDuration, target: baseRate, phase: 'ramp' });
  stages.push({ duration: calmDuration, target: baseRate, phase: 'calm' });
}
const phaseEnds = [];
let elapsedSeconds = 0;
for (const stage of stages) {
  elapsedSeconds += parseDurationSeconds(stage.duration);
  phaseEnds.push({ endMs: elapsedSeconds * 1000, phase: stage.phase });
}

const thresholds = loadThresholds(config, { dropped: false, p95: false, httpFailed: false });
for (const phase of ['calm', 'spike']) {
  // Informational: makes the per-phase values appear in the summary.
  thresholds[`scenario_accept_duration{phase:${phase}}`] = ['p(95)>=0'];
  thresholds[`scenario_errors{phase:${phase}}`] = ['rate>=0'];
}
thresholds['dropped_iterations'] = ['count>=0'];

export const options = {
  scenarios: {
    spike: {
      executor: 'ramping-arrival-rate',
      startRate: baseRate,
      timeUnit: '1s',
      stages: stages.map((stage) => ({ duration: stage.duration, target: stage.target })),
      preAllocatedVUs: vus.preAllocatedVUs,
      maxVUs: vus.maxVUs,
      gracefulStop: '30s',
    },
  },
  thresholds,
  summaryTrendStats: SUMMARY_TREND_STATS,
  setupTimeout: '5m',
};

function currentPhase() {
  const elapsedMs = Date.now() - exec.scenario.startTime;
  for (const entry of phaseEnds) {
    if (elapsedMs < entry.endMs) {
      return entry.phase;
    }
  }
  return 'calm';
}

export function setup() {
  return prepareRun(client, config, { name: 'spike', steady: false });
}

export default function (data) {
  const phase = currentPhase();
  // VU tags also reach the extension's HTTP samples (http_req_*), so they can be split by phase as well.
  exec.vu.metrics.tags.phase = phase;
  mixedOperation(client, config, data, { ownerSlots: vus.preAllocatedVUs }, { phase });
}

export function teardown(data) {
  finishRun(data);
}
