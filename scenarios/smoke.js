// smoke.js — every operation of the API once per iteration, with strict checks: signup → sign-in (and a wrong
// password refused) → balance of a new account → deposit → withdrawal → transfer to a prepared account →
// transaction status → a replay of the deposit with the same idempotency key (same transaction, no second effect)
// → an overdraft (outcome fail, reason insufficient_funds, balance unchanged) → the async (promise) forms.
// A handful of iterations; every check must pass (checks rate==1) and no operation may end in error.
//
//   bin/k6 run -e RUN_DIR=reports/runs/smoke scenarios/smoke.js

import { check } from 'k6';
import exec from 'k6/execution';
import { createClient, finishRun, prepareRun } from './lib/client.js';
import { envInt, loadConfig } from './lib/config.js';
import { recordResult } from './lib/metrics.js';

const config = loadConfig({ accounts: 2, duration: '2m' });
const client = createClient(config);
const PASSWORD = 'smoke-password-1';
// A well-formed transaction id that no system issued; GET must answer 404, which the client returns as null.
const UNKNOWN_TRANSACTION = '00000000-0000-8000-8000-000000000000';

export const options = {
  scenarios: {
    smoke: {
      executor: 'per-vu-iterations',
      vus: envInt('VUS', 1, { min: 1, max: 50 }),
      iterations: envInt('ITERATIONS', 3, { min: 1, max: 1000 }),
      maxDuration: config.duration,
    },
  },
  thresholds: {
    checks: ['rate==1'],
    scenario_errors: ['rate==0'],
  },
  setupTimeout: '2m',
};

export function setup() {
  return prepareRun(client, config, { name: 'smoke' });
}

function checkSettled(result, label) {
  recordResult(result);
  return check(result, {
    [`${label}: outcome ok, status settled`]: (r) => r.outcome === 'ok' && r.status === 'settled',
    [`${label}: transaction id and key`]: (r) => typeof r.transactionId === 'string' && r.transactionId.length > 0 && r.key.length > 0,
    [`${label}: attempts and statuses agree`]: (r) => r.attempts >= 1 && r.httpStatuses.length === r.attempts,
    [`${label}: accept and settle latencies`]: (r) => r.acceptMs >= 0 && typeof r.settleMs === 'number' && r.settleMs >= 0,
  });
}

function checkBalance(session, expected, label) {
  const balance = client.balance(session, session.accountId);
  check(balance, { [`${label}: balance is ${expected}`]: (b) => b === expected });
  return balance;
}

export default async function (data) {
  const iteration = exec.vu.iterationInScenario;
  const email = `smoke-${data.startedAt}-${exec.vu.idInTest}-${iteration}@example.com`;

  const user = client.signup(email, PASSWORD);
  check(user, { 'signup: user and account ids': (u) => u.userId > 0 && u.accountId > 0 });

  const session = client.signin(email, PASSWORD);
  check(session, {
    'signin: token for the signed-up user': (s) =>
      typeof s.token === 'string' && s.token.length > 0 && s.userId === user.userId && s.accountId === user.accountId,
  });
  let refused = false;
  try {
    client.signin(email, 'wrong-password-1');
  } catch (error) {
    refused = true;
  }
  check(refused, { 'signin: wrong password refused': (r) => r === true });
  checkBalance(session, 0, 'new account');

  const deposit = client.deposit(session, session.accountId, 10000);
  checkSettled(deposit, 'deposit');
  check(deposit, { 'deposit: kind': (r) => r.kind === 'deposit' });
  checkBalance(session, 10000, 'after deposit');

  const withdrawal = client.withdraw(session, session.accountId, 2500);
  checkSettled(withdrawal, 'withdrawal');
  checkBalance(session, 7500, 'after withdrawal');

  const counterparty = data.accounts[iteration % data.accounts.length];
  const counterpartyBefore = client.balance(counterparty, counterparty.accountId);
  const transfer = client.transfer(session, session.accountId, counterparty.accountId, 1500);
  checkSettled(transfer, 'transfer');
  checkBalance(session, 6000, 'after transfer');
  // Other smoke VUs may credit the same counterparty meanwhile, never debit it: at least the transfer arrived.
  check(client.balance(counterparty, counterparty.accountId), {
    'transfer: counterparty credited': (b) => b >= counterpartyBefore + 1500,
  });

  const transaction = client.transaction(session, transfer.transactionId);
  check(transaction, {
    'transaction: found, settled transfer': (t) => t !== null && t.status === 'settled' && t.kind === 'transfer',
    'transaction: amount and accounts': (t) =>
      t !== null && t.amount === 1500 && t.source_account_id === session.accountId &&
      t.destination_account_id === counterparty.accountId,
    'transaction: same id': (t) => t !== null && t.transaction_id === transfer.transactionId,
  });
  check(client.transaction(session, UNKNOWN_TRANSACTION), { 'transaction: unknown id is null': (t) => t === null });

  const replay = client.deposit(session, session.accountId, 10000, { key: deposit.key });
  recordResult(replay);
  check(replay, {
    'replay: same key answered ok': (r) => r.outcome === 'ok' && r.status === 'settled',
    'replay: same key, same transaction': (r) => r.key === deposit.key && r.transactionId === deposit.transactionId,
  });
  checkBalance(session, 6000, 'after replay (no second effect)');

  const overdraft = client.withdraw(session, session.accountId, 6001);
  recordResult(overdraft);
  check(overdraft, {
    'overdraft: outcome fail': (r) => r.outcome === 'fail',
    'overdraft: reason insufficient_funds': (r) => r.reason === 'insufficient_funds',
    'overdraft: status rejected': (r) => r.status === 'rejected',
  });
  if (overdraft.transactionId) {
    check(client.transaction(session, overdraft.transactionId), {
      'overdraft: transaction rejected': (t) => t !== null && t.status === 'rejected' && t.reason === 'insufficient_funds',
    });
  }
  checkBalance(session, 6000, 'after overdraft (unchanged)');

  const asyncDeposit = await client.depositAsync(session, session.accountId, 500);
  checkSettled(asyncDeposit, 'async deposit');
  const asyncBalance = await client.balanceAsync(session, session.accountId);
  check(asyncBalance, { 'async balance: 6500': (b) => b === 6500 });
}

export function teardown(data) {
  const journal = finishRun(data);
  if (config.runDir || __ENV.LEDGER_RUN_DIR) {
    check(journal, {
      'journal: closed with operations': (j) => j !== null && j.operations > 0 && typeof j.path === 'string',
    });
  }
}
