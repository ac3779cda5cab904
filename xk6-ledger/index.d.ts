/**
 * k6/x/ledger — the Ledgerproof k6 extension (xk6-ledger).
 *
 * A client of the ledger HTTP API documented in sut/openapi.yaml, with idempotency keys generated client-side,
 * retries that reuse the key, fault-making knobs (duplicates, key misuse), custom metrics, and an operation
 * journal: every logical operation is written, as one JSON line, to <runDir>/journal.jsonl (schema:
 * xk6-ledger/JOURNAL.md). This file is the contract of the JS API; the Go code implements exactly it.
 *
 * Durations are strings k6 understands ("250ms", "5s") or numbers of milliseconds.
 * Amounts are integers in minor units (never floats); anything else is rejected with an error.
 */

/** Options of a Client. Every field is optional except baseURL/baseURLs. */
export interface ClientOptions {
  /** One gateway base URL, e.g. "http://127.0.0.1:58080". */
  baseURL?: string;
  /** Several gateways: requests go round-robin over them. */
  baseURLs?: string[];
  /** Timeout of one HTTP request. Default "10s". */
  timeout?: string | number;
  /** Bounded wait for the outcome of a money operation ("Prefer: wait=N"). Default "5s"; "0s" means answer 202 at once. */
  wait?: string | number;
  /** Retry policy for money operations: attempts on 5xx, 409 in flight, 429 and connection errors, always with the same key. */
  retry?: RetryOptions;
  /** Fraction (0..1) of money operations sent twice with the same key and body. Default 0. */
  duplicateRate?: number;
  /** How duplicates are sent: "concurrent" (both at once, like a double click) or "delayed" (again after duplicateDelay, like a load-balancer replay). Default "concurrent". */
  duplicateMode?: "concurrent" | "delayed";
  /** Delay of a "delayed" duplicate. Default "100ms". */
  duplicateDelay?: string | number;
  /** Fraction (0..1) of money operations followed by a request that reuses the key with a different amount; it must be rejected and never applied. Default 0. */
  misuseRate?: number;
  /** Seed of the client's random choices (keys are random regardless); printed at start. Default: time-based. */
  seed?: number;
  /** Journal the operations. Default true when a run directory is set (option runDir or env LEDGER_RUN_DIR). */
  journal?: boolean;
  /** Run directory; default env LEDGER_RUN_DIR; none means no journal. */
  runDir?: string;
}

export interface RetryOptions {
  /** Total attempts including the first. Default 3; 1 disables retries. */
  maxAttempts?: number;
  /** First backoff. Default "50ms"; doubles each attempt. */
  backoff?: string | number;
  /** Largest backoff. Default "1s". */
  maxBackoff?: string | number;
  /** Jitter: each backoff is multiplied by a random factor in [1-jitter, 1+jitter]. Default 0.5. */
  jitter?: number;
}

/** A signed-in user. */
export interface Session {
  token: string;
  userId: number;
  accountId: number;
  email: string;
}

/** A user prepared by prepareAccounts: signed up, signed in and funded. */
export interface PreparedAccount extends Session {
  password: string;
  /** Balance funded, in minor units. */
  balance: number;
}

/** The outcome class of an operation, as in Jepsen: ok = settled, fail = definitively rejected (never applied), info = unknown. */
export type Outcome = "ok" | "fail" | "info";

/** The result of a money operation. */
export interface OperationResult {
  /** Journal id of the logical operation (unique per k6 process). */
  op: string;
  /** Idempotency key used on every attempt. */
  key: string;
  kind: "deposit" | "withdrawal" | "transfer";
  outcome: Outcome;
  /** Transaction id from the gateway, when it answered one. */
  transactionId?: string;
  /** Ledger status: "settled", "rejected" or "accepted" (not final: outcome "info"). */
  status?: string;
  /** Rejection reason or error code, for outcome "fail" (and "info" when known). */
  reason?: string;
  /** HTTP status of every attempt (0 for a connection error or timeout). */
  httpStatuses: number[];
  attempts: number;
  /** Milliseconds from invoke to the gateway's first answer (accept latency). */
  acceptMs: number;
  /** Milliseconds from invoke to a final outcome; absent when the outcome is not final. */
  settleMs?: number;
}

/** Options of one money operation. */
export interface OperationOptions {
  /** Use this idempotency key instead of a generated one. */
  key?: string;
  /** Override the client's wait for this call. */
  wait?: string | number;
}

export interface PrepareOptions {
  /** Number of users. Required. */
  count: number;
  /** Deposit per user, minor units. Default 1000000. */
  funding?: number;
  /** Concurrent signups. Default 32. */
  concurrency?: number;
  /** Email prefix; a run-unique suffix is added. Default "k6". */
  emailPrefix?: string;
  /** Password of every user. Default a fixed test password. */
  password?: string;
}

export class Client {
  constructor(options: ClientOptions);
  /** POST /v1/users. Throws on anything but 201. */
  signup(email: string, password: string): { userId: number; accountId: number };
  /** POST /v1/sessions. Throws on anything but 201. */
  signin(email: string, password: string): Session;
  /** Signs up, signs in and funds `count` users in parallel (Go goroutines, bounded by concurrency); for setup(). */
  prepareAccounts(options: PrepareOptions): PreparedAccount[];

  deposit(session: Session, accountId: number, amount: number, options?: OperationOptions): OperationResult;
  withdraw(session: Session, accountId: number, amount: number, options?: OperationOptions): OperationResult;
  transfer(session: Session, fromAccountId: number, toAccountId: number, amount: number, options?: OperationOptions): OperationResult;
  /** GET /v1/transactions/{id}: the transaction resource, or null when 404. */
  transaction(session: Session, transactionId: string): { transaction_id: string; kind: string; status: string; amount: number; source_account_id: number; destination_account_id: number; reason?: string } | null;
  /** GET /v1/accounts/{id}: the balance in minor units. Throws on anything but 200. */
  balance(session: Session, accountId: number): number;

  depositAsync(session: Session, accountId: number, amount: number, options?: OperationOptions): Promise<OperationResult>;
  withdrawAsync(session: Session, accountId: number, amount: number, options?: OperationOptions): Promise<OperationResult>;
  transferAsync(session: Session, fromAccountId: number, toAccountId: number, amount: number, options?: OperationOptions): Promise<OperationResult>;
  signupAsync(email: string, password: string): Promise<{ userId: number; accountId: number }>;
  signinAsync(email: string, password: string): Promise<Session>;
  transactionAsync(session: Session, transactionId: string): Promise<ReturnType<Client["transaction"]>>;
  balanceAsync(session: Session, accountId: number): Promise<number>;
}

/** Flushes the journal to disk and closes it; call it in teardown(). Safe to call twice. Returns the journal's path and line count. */
export function closeJournal(): { path: string; operations: number } | null;

/** Journal statistics so far: operations recorded, bytes written, nanoseconds VUs spent blocked on a full journal buffer. */
export function journalStats(): { operations: number; bytes: number; blockedNs: number };

declare const ledger: { Client: typeof Client; closeJournal: typeof closeJournal; journalStats: typeof journalStats };
export default ledger;
