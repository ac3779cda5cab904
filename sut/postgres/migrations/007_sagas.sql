-- Cross-shard transfers as sagas (docs/sharding.md). Every shard has both
-- tables; with one shard they stay empty.
--
-- The saga log, in the source account's shard: one row per cross-shard
-- transfer, written in the transaction that debits the source (state
-- 'debited'), and moved once to 'completed' (the destination credited) or
-- 'compensated' (the destination refused; the source refunded in the same
-- transaction). The id is the transfer's transaction id; the debit posting
-- and the refund posting carry it as their transaction_id. The saga's end
-- writes the transfer's transactions row in the same transaction (and, when
-- completed, its settlement_outbox event). 'failed' is only ever written by
-- the seeded bug saga-no-compensation.
CREATE TABLE sagas (
    id                     uuid        PRIMARY KEY,
    source_account_id      bigint      NOT NULL,
    destination_account_id bigint      NOT NULL,
    destination_shard      integer     NOT NULL CHECK (destination_shard >= 0),
    amount                 bigint      NOT NULL CHECK (amount > 0),
    -- The command's identity, for the transfer's transactions row the
    -- saga's end writes (settled when completed, rejected when
    -- compensated): the client's outcome is decided only then.
    user_id                bigint      NOT NULL,
    idempotency_key        text        NOT NULL,
    fingerprint            text        NOT NULL,
    kafka_partition        integer     NOT NULL,
    kafka_offset           bigint      NOT NULL,
    accepted_at            timestamptz NOT NULL,
    state                  text        NOT NULL CHECK (state IN ('debited', 'completed', 'compensated', 'failed')),
    reason                 text        NOT NULL DEFAULT '',
    refunds                integer     NOT NULL DEFAULT 0 CHECK (refunds >= 0),
    started_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now()
);
-- The recovery loop's scan: sagas still in flight, oldest first.
CREATE INDEX sagas_in_flight ON sagas (updated_at) WHERE state = 'debited';

-- The destination shard's decision on each saga, unique by saga id: the
-- credit ('credited', with its posting in the same transaction) or the
-- fence 'cancelled' written before the source refunds, so a late or
-- repeated credit of a compensated saga cannot follow.
CREATE TABLE saga_credits (
    saga_id    uuid        PRIMARY KEY,
    account_id bigint      NOT NULL,
    amount     bigint      NOT NULL CHECK (amount > 0),
    outcome    text        NOT NULL CHECK (outcome IN ('credited', 'cancelled')),
    reason     text        NOT NULL DEFAULT '',
    decided_at timestamptz NOT NULL DEFAULT now()
);

-- Users live in shard 0 (sign-in, sessions, the email keys); an account of
-- shard i > 0 names its user by id across databases, where no foreign key
-- reaches. On one ledger an account is only ever created with its user, in
-- one transaction (Store.CreateUser), so the key guarded nothing the code
-- does not; the auditor checks each account's user against the journal's
-- signups (no-phantoms, forbidden rejections).
ALTER TABLE accounts DROP CONSTRAINT IF EXISTS accounts_user_id_fkey;
