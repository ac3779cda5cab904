// Configuration of every scenario, read from environment variables (`k6 run -e NAME=value` or the process
// environment) with documented defaults. Environment variables are read only here; scenarios receive a plain
// object. A malformed value stops the test in the init context with an error naming the variable, never a silent
// fallback. The defaults are listed in docs/scenarios.md.

const DURATION_PATTERN = /^(\d+(\.\d+)?(ms|s|m|h))+$/;
const DURATION_PART = /(\d+(?:\.\d+)?)(ms|s|m|h)/g;
const SECONDS_PER_UNIT = { ms: 0.001, s: 1, m: 60, h: 3600 };

/** DEFAULT_BASE_URL is the first gateway of the local stack (`make up`). */
export const DEFAULT_BASE_URL = 'http://127.0.0.1:58080';

function raw(name) {
  const value = __ENV[name];
  if (value === undefined || value === null) {
    return undefined;
  }
  const trimmed = String(value).trim();
  return trimmed === '' ? undefined : trimmed;
}

/** envString returns the variable, or fallback when it is unset or empty. */
export function envString(name, fallback) {
  const value = raw(name);
  return value === undefined ? fallback : value;
}

function checkRange(name, value, limits) {
  if (limits.min !== undefined && value < limits.min) {
    throw new Error(`${name}=${value}: must be at least ${limits.min}`);
  }
  if (limits.max !== undefined && value > limits.max) {
    throw new Error(`${name}=${value}: must be at most ${limits.max}`);
  }
  return value;
}

/** envInt returns the variable as an integer (digits only), or fallback; limits.min/max are inclusive. */
export function envInt(name, fallback, limits = {}) {
  const value = raw(name);
  if (value === undefined) {
    return fallback;
  }
  if (!/^-?\d+$/.test(value)) {
    throw new Error(`${name}=${value}: not an integer`);
  }
  const parsed = Number(value);
  if (!Number.isSafeInteger(parsed)) {
    throw new Error(`${name}=${value}: out of the safe integer range`);
  }
  return checkRange(name, parsed, limits);
}

/** envFloat returns the variable as a finite number, or fallback; limits.min/max are inclusive. */
export function envFloat(name, fallback, limits = {}) {
  const value = raw(name);
  if (value === undefined) {
    return fallback;
  }
  const parsed = Number(value);
  if (!Number.isFinite(parsed)) {
    throw new Error(`${name}=${value}: not a number`);
  }
  return checkRange(name, parsed, limits);
}

/** envBool accepts 1/0, true/false, yes/no, on/off. */
export function envBool(name, fallback) {
  const value = raw(name);
  if (value === undefined) {
    return fallback;
  }
  const lower = value.toLowerCase();
  if (['1', 'true', 'yes', 'on'].includes(lower)) {
    return true;
  }
  if (['0', 'false', 'no', 'off'].includes(lower)) {
    return false;
  }
  throw new Error(`${name}=${value}: not a boolean (use 1/0, true/false)`);
}

/** parseDurationSeconds parses a k6 duration ("500ms", "30s", "1m30s", "2h") into seconds. */
export function parseDurationSeconds(text, name = 'duration') {
  const value = String(text).trim();
  if (!DURATION_PATTERN.test(value)) {
    throw new Error(`${name}=${value}: not a duration such as 500ms, 30s, 1m30s, 2h`);
  }
  const part = new RegExp(DURATION_PART.source, 'g');
  let seconds = 0;
  let match = part.exec(value);
  while (match !== null) {
    seconds += Number(match[1]) * SECONDS_PER_UNIT[match[2]];
    match = part.exec(value);
  }
  return seconds;
}

/** envDuration returns the variable as a k6 duration string (validated), or fallback. */
export function envDuration(name, fallback) {
  const value = envString(name, fallback);
  parseDurationSeconds(value, name);
  return value;
}

/** formatDuration turns seconds into a k6 duration string ("90s", "1500ms"). */
export function formatDuration(seconds) {
  if (Number.isInteger(seconds)) {
    return `${seconds}s`;
  }
  return `${Math.round(seconds * 1000)}ms`;
}

/** envList splits a comma-separated variable into trimmed, non-empty items. */
export function envList(name, fallback) {
  const value = envString(name, fallback);
  return value.split(',').map((item) => item.trim()).filter((item) => item !== '');
}

/**
 * parseMix reads an operation mix such as "deposit=3,withdrawal=2,transfer=5" into weights. Weights are
 * non-negative numbers; at least one must be positive. Kinds not named get weight 0.
 */
export function parseMix(text, name = 'MIX') {
  const weights = { deposit: 0, withdrawal: 0, transfer: 0 };
  for (const part of text.split(',')) {
    const [kind, weightText] = part.split('=').map((item) => (item || '').trim());
    if (!(kind in weights)) {
      throw new Error(`${name}: unknown operation "${kind}" (use deposit, withdrawal, transfer)`);
    }
    const weight = Number(weightText);
    if (!Number.isFinite(weight) || weight < 0) {
      throw new Error(`${name}: weight of ${kind} must be a non-negative number, got "${weightText}"`);
    }
    weights[kind] = weight;
  }
  if (weights.deposit + weights.withdrawal + weights.transfer <= 0) {
    throw new Error(`${name}: at least one weight must be positive`);
  }
  return weights;
}

function parseBaseURLs(list) {
  for (const url of list) {
    if (!/^https?:\/\/[^\s/]+/.test(url)) {
      throw new Error(`BASE_URL: "${url}" is not an http(s) URL`);
    }
  }
  if (list.length === 0) {
    throw new Error('BASE_URL: empty');
  }
  return list.map((url) => url.replace(/\/+$/, ''));
}

/**
 * loadConfig reads every shared parameter. `defaults` lets a scenario change a default (soak runs longer than
 * the gate, hot-accounts turns ownership off); the environment still wins over both.
 */
export function loadConfig(defaults = {}) {
  const d = Object.assign(
    {
      rate: 200,
      duration: '60s',
      accounts: 100,
      funding: 1000000,
      wait: '5s',
      timeout: '10s',
      duplicateRate: 0,
      duplicateRateMax: 1,
      duplicateMode: 'concurrent',
      duplicateDelay: '100ms',
      misuseRate: 0,
      misuseRateMax: 1,
      retryAttempts: 3,
      retryBackoff: '50ms',
      retryMaxBackoff: '1s',
      retryJitter: 0.5,
      mix: 'deposit=3,withdrawal=2,transfer=5',
      amountMin: 1,
      amountMax: 1000,
      zipfExponent: 1.1,
      ownership: true,
      errorRateMax: 0.001,
      p95Ms: 250,
      iterationSeconds: 0.5,
      vuHeadroom: 4,
    },
    defaults,
  );

  const config = {
    baseURLs: parseBaseURLs(envList('BASE_URL', DEFAULT_BASE_URL)),
    rate: envInt('RATE', d.rate, { min: 1 }),
    duration: envDuration('DURATION', d.duration),
    accounts: envInt('ACCOUNTS', d.accounts, { min: 2 }),
    funding: envInt('FUNDING', d.funding, { min: 1, max: 100000000000 }),
    prepareConcurrency: envInt('PREPARE_CONCURRENCY', 32, { min: 1, max: 1024 }),
    runDir: envString('RUN_DIR', undefined),
    wait: envDuration('WAIT', d.wait),
    timeout: envDuration('TIMEOUT', d.timeout),
    seed: envInt('SEED', undefined, { min: 0, max: 2147483647 }),
    duplicateRate: envFloat('DUPLICATE_RATE', d.duplicateRate, { min: 0, max: d.duplicateRateMax }),
    duplicateMode: envString('DUPLICATE_MODE', d.duplicateMode),
    duplicateDelay: envDuration('DUPLICATE_DELAY', d.duplicateDelay),
    misuseRate: envFloat('MISUSE_RATE', d.misuseRate, { min: 0, max: d.misuseRateMax }),
    retry: {
      maxAttempts: envInt('RETRY_ATTEMPTS', d.retryAttempts, { min: 1, max: 100 }),
      backoff: envDuration('RETRY_BACKOFF', d.retryBackoff),
      maxBackoff: envDuration('RETRY_MAX_BACKOFF', d.retryMaxBackoff),
      jitter: envFloat('RETRY_JITTER', d.retryJitter, { min: 0, max: 1 }),
    },
    mix: parseMix(envString('MIX', d.mix)),
    amountMin: envInt('AMOUNT_MIN', d.amountMin, { min: 1, max: 100000000000 }),
    amountMax: envInt('AMOUNT_MAX', d.amountMax, { min: 1, max: 100000000000 }),
    zipfExponent: envFloat('ZIPF_EXPONENT', d.zipfExponent, { min: 0, max: 10 }),
    ownership: envBool('OWNERSHIP', d.ownership),
    ownerSlots: envInt('OWNER_SLOTS', undefined, { min: 1 }),
    errorRateMax: envFloat('ERROR_RATE_MAX', d.errorRateMax, { min: 0, max: 1 }),
    p95Ms: envFloat('P95_MS', d.p95Ms, { min: 1 }),
    extensionThresholds: envBool('EXTENSION_THRESHOLDS', true),
    preVUs: envInt('PRE_VUS', undefined, { min: 1 }),
    maxVUs: envInt('MAX_VUS', undefined, { min: 1 }),
    iterationSeconds: envFloat('VU_ITERATION_SECONDS', d.iterationSeconds, { min: 0.001 }),
    vuHeadroom: envFloat('VU_HEADROOM', d.vuHeadroom, { min: 1 }),
    targetTps: envInt('TARGET_TPS', 3600, { min: 1 }),
  };

  if (!['concurrent', 'delayed', 'mixed'].includes(config.duplicateMode)) {
    throw new Error(`DUPLICATE_MODE=${config.duplicateMode}: use concurrent, delayed or mixed`);
  }
  if (parseDurationSeconds(config.wait, 'WAIT') >= parseDurationSeconds(config.timeout, 'TIMEOUT')) {
    // The client refuses it too: the request would time out before the gateway answers.
    throw new Error(`WAIT=${config.wait} must be shorter than TIMEOUT=${config.timeout}`);
  }
  if (config.amountMin > config.amountMax) {
    throw new Error(`AMOUNT_MIN=${config.amountMin} is above AMOUNT_MAX=${config.amountMax}`);
  }
  if (config.preVUs !== undefined && config.maxVUs !== undefined && config.maxVUs < config.preVUs) {
    throw new Error(`MAX_VUS=${config.maxVUs} is below PRE_VUS=${config.preVUs}`);
  }
  return config;
}

/**
 * vusFor sizes the VU pool of an arrival-rate executor: an iteration is one synchronous operation that blocks
 * until its outcome (bounded by WAIT), so rate × iteration time VUs are busy. preAllocatedVUs covers an
 * iteration time of VU_ITERATION_SECONDS (default 0.5 s: twice the 250 ms p95 a held rate allows, so a short
 * stall of the system does not exhaust the pool; at least 100 VUs); maxVUs adds headroom (VU_HEADROOM, default
 * ×4) for longer stalls. A VU costs about 0.4 MB of k6 memory (measured with gate.js). Beyond maxVUs k6 drops iterations, which the dropped_iterations thresholds report. PRE_VUS and
 * MAX_VUS override both.
 */
export function vusFor(rate, config) {
  const pre = config.preVUs !== undefined ? config.preVUs : Math.max(100, Math.ceil(rate * config.iterationSeconds));
  const max = config.maxVUs !== undefined ? config.maxVUs : Math.max(pre, Math.ceil(pre * config.vuHeadroom));
  return { preAllocatedVUs: pre, maxVUs: Math.max(pre, max) };
}

/** describeConfig is the one-line summary printed by setup(), so a run's parameters are in its log. */
export function describeConfig(config, seed, steady = true) {
  return [
    `base=${config.baseURLs.join(',')}`,
    steady ? `rate=${config.rate}/s` : '',
    steady ? `duration=${config.duration}` : '',
    `accounts=${config.accounts}`,
    `funding=${config.funding}`,
    `wait=${config.wait}`,
    `duplicates=${config.duplicateRate}(${config.duplicateMode})`,
    `misuse=${config.misuseRate}`,
    `retry=${config.retry.maxAttempts}x${config.retry.backoff}..${config.retry.maxBackoff}`,
    `ownership=${config.ownership}`,
    `seed=${seed}`,
    `runDir=${config.runDir || __ENV.LEDGER_RUN_DIR || '(none: no journal)'}`,
  ]
    .filter((part) => part !== '')
    .join(' ');
}
