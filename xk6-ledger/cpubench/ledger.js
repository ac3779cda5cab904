// The xk6-ledger side of the CPU benchmark: transfers through the extension's
// client, journaled (or not, with -e JOURNAL=off), against the trivial
// endpoint. See main.go.
import ledger from 'k6/x/ledger';

const client = new ledger.Client({
  baseURL: __ENV.BASE_URL,
  wait: 0,
  retry: { maxAttempts: 1 },
  runDir: __ENV.RUN_DIR,
  journal: __ENV.JOURNAL !== 'off',
});
const session = { token: 'benchmark', userId: 1, accountId: 1, email: 'bench@example.com' };

export const options = {
  scenarios: {
    load: { executor: 'shared-iterations', vus: Number(__ENV.VUS || 8), iterations: Number(__ENV.ITERATIONS || 20000), maxDuration: '5m' },
  },
  summaryTrendStats: ['med'],
};

export default function () {
  client.transfer(session, 1, 2, 100);
}

export function teardown() {
  ledger.closeJournal();
}
