// The plain k6/http side of the CPU benchmark: the same requests (same
// headers, a fresh idempotency key each, the same body) with no journal.
import http from 'k6/http';

const url = `${__ENV.BASE_URL}/v1/transfers`;
const body = JSON.stringify({ from_account_id: 1, to_account_id: 2, amount: 100 });

export const options = {
  scenarios: {
    load: { executor: 'shared-iterations', vus: Number(__ENV.VUS || 8), iterations: Number(__ENV.ITERATIONS || 20000), maxDuration: '5m' },
  },
  summaryTrendStats: ['med'],
};

function key() {
  let k = '';
  for (let i = 0; i < 4; i++) {
    k += Math.floor(Math.random() * 0x100000000).toString(16).padStart(8, '0');
  }
  return k;
}

export default function () {
  const response = http.post(url, body, {
    headers: { 'Content-Type': 'application/json', Authorization: 'Bearer benchmark', 'Idempotency-Key': key() },
    tags: { name: 'POST /v1/transfers' },
  });
  if (response.status !== 200) {
    throw new Error(`unexpected status ${response.status}`);
  }
}
