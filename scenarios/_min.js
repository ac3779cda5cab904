import { createClient, prepareRun } from './lib/client.js';
import { loadConfig } from './lib/config.js';
import { buildStepPlan, stepScenario } from './lib/steps.js';
import exec from 'k6/execution';
const config = loadConfig();
const plan = buildStepPlan(config);
const client = createClient(config);
const scenarios = {};
for (const step of plan) { scenarios[step.name] = Object.assign(stepScenario(step), { exec: 'step' }); }
export const options = { scenarios, setupTimeout: '10m' };
export function setup() { const d = prepareRun(client, config, { name: 'capacity', steady: false }); console.log('capacity: load starts'); return d; }
let i = 0;
export function step(data) {
  const a = data.accounts[(exec.vu.idInTest * 7 + i++) % data.accounts.length];
  client.deposit(a, a.accountId, 5);
}
