// The ledger client of a scenario, and the setup()/teardown() every load scenario shares.

import ledger from 'k6/x/ledger';
import { describeConfig } from './config.js';
import { mixSeed } from './random.js';

/**
 * clientOptions turns the configuration into ledger.Client options (xk6-ledger/index.d.ts). `overrides` are
 * merged last (a scenario's own retry policy, for example). The client seed is derived from SEED and the VU
 * number (__VU, available in the init context) so that VUs make different duplicate/misuse choices; without SEED
 * the extension picks a time-based seed and prints it.
 */
export function clientOptions(config, overrides = {}) {
  const options = {
    timeout: config.timeout,
    wait: config.wait,
    retry: Object.assign({}, config.retry),
    duplicateRate: config.duplicateRate,
    duplicateMode: config.duplicateMode === 'mixed' ? (__VU % 2 === 0 ? 'delayed' : 'concurrent') : config.duplicateMode,
    duplicateDelay: config.duplicateDelay,
    misuseRate: config.misuseRate,
  };
  if (config.baseURLs.length === 1) {
    options.baseURL = config.baseURLs[0];
  } else {
    options.baseURLs = config.baseURLs.slice();
  }
  if (config.runDir !== undefined) {
    options.runDir = config.runDir;
  }
  if (config.seed !== undefined) {
    options.seed = mixSeed(config.seed, __VU) % 2147483647;
  }
  return Object.assign(options, overrides);
}

/** createClient builds a ledger.Client; call it in the init context (top level of the script). */
export function createClient(config, overrides = {}) {
  return new ledger.Client(clientOptions(config, overrides));
}

/**
 * prepareRun is the setup() of the load scenarios: it prints the parameters (without RATE and DURATION when
 * options.steady is false: capacity and spike have their own plan), signs up, signs in and funds
 * ACCOUNTS users through client.prepareAccounts, and returns the data every VU receives: the accounts (with their
 * session tokens) and the run seed. Without SEED the seed is chosen here, once, and printed, so every VU derives
 * its generator from the same number and the run can be replayed with -e SEED=<printed value>.
 */
export function prepareRun(client, config, options = {}) {
  const seed = config.seed !== undefined ? config.seed : Math.floor(Date.now() % 2147483647);
  console.log(`ledgerproof ${options.name || 'scenario'}: ${describeConfig(config, seed, options.steady !== false)}`);
  const accounts = client.prepareAccounts({
    count: options.accounts !== undefined ? options.accounts : config.accounts,
    funding: config.funding,
    concurrency: config.prepareConcurrency,
    emailPrefix: `k6-${options.name || 'scenario'}`,
  });
  if (!Array.isArray(accounts) || accounts.length < 2) {
    throw new Error(`prepareAccounts returned ${accounts && accounts.length} accounts; at least 2 are needed`);
  }
  return { accounts, seed, startedAt: Date.now() };
}

/** finishRun is the teardown(): it flushes and closes the journal and prints where it is and how many lines. */
export function finishRun(data) {
  const stats = ledger.journalStats();
  const journal = ledger.closeJournal();
  const seed = data && data.seed !== undefined ? ` seed=${data.seed}` : '';
  if (journal === null || journal === undefined) {
    console.log(`ledgerproof: no journal (set RUN_DIR or LEDGER_RUN_DIR to record one)${seed}`);
    return null;
  }
  const blockedMs = stats && stats.blockedNs ? (stats.blockedNs / 1e6).toFixed(1) : '0';
  console.log(
    `ledgerproof: journal ${journal.path}: ${journal.operations} operations` +
      ` (VUs blocked on a full journal buffer for ${blockedMs} ms)${seed}`,
  );
  return journal;
}
