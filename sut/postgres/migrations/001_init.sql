-- The ledger's schema. Amounts are bigint minor units, never floats.

CREATE TABLE users (
    id            bigserial PRIMARY KEY,
    email         text        NOT NULL UNIQUE,
    password_hash text        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- kind 'external' is the one account that stands for the world outside the
-- ledger (id 0). Its balance column is never updated: it would be a hot row
-- locked by every deposit and withdrawal. User balances can never go negative.
CREATE TABLE accounts (
    id         bigserial PRIMARY KEY,
    user_id    bigint      REFERENCES users (id),
    kind       text        NOT NULL CHECK (kind IN ('user', 'external')),
    balance    bigint      NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(),
    CHECK (kind = 'external' OR balance >= 0),
    CHECK ((kind = 'user') = (user_id IS NOT NULL))
);
CREATE UNIQUE INDEX accounts_one_per_user ON accounts (user_id) WHERE kind = 'user';
INSERT INTO accounts (id, user_id, kind) VALUES (0, NULL, 'external');

-- One row per logical request, settled or rejected. The id is derived from
-- (user_id, idempotency_key); the unique constraint is the last line of
-- defence of exactly-once: a second effect for one key cannot be stored.
CREATE TABLE transactions (
    id                     uuid        PRIMARY KEY,
    user_id                bigint      NOT NULL,
    idempotency_key        text        NOT NULL,
    kind                   text        NOT NULL CHECK (kind IN ('deposit', 'withdrawal', 'transfer')),
    source_account_id      bigint      NOT NULL,
    destination_account_id bigint      NOT NULL,
    amount                 bigint      NOT NULL CHECK (amount > 0),
    status                 text        NOT NULL CHECK (status IN ('settled', 'rejected')),
    reason                 text        NOT NULL DEFAULT '',
    fingerprint            text        NOT NULL,
    kafka_partition        integer     NOT NULL,
    kafka_offset           bigint      NOT NULL,
    accepted_at            timestamptz NOT NULL,
    applied_at             timestamptz NOT NULL DEFAULT now(),
    UNIQUE (user_id, idempotency_key)
);

-- Double-entry postings: every settled transaction writes exactly two rows
-- whose amounts sum to zero. balance_after records the account's balance
-- right after this posting (user accounts), so the audit can replay order.
CREATE TABLE postings (
    id             bigserial PRIMARY KEY,
    transaction_id uuid   NOT NULL REFERENCES transactions (id),
    account_id     bigint NOT NULL REFERENCES accounts (id),
    amount         bigint NOT NULL CHECK (amount <> 0),
    balance_after  bigint
);
CREATE INDEX postings_by_account ON postings (account_id, id);
CREATE INDEX postings_by_transaction ON postings (transaction_id);

-- The next Kafka offset to apply per partition, written in the same
-- transaction as the postings it covers. Workers seek here on assignment.
CREATE TABLE consumer_offsets (
    topic       text        NOT NULL,
    partition   integer     NOT NULL,
    next_offset bigint      NOT NULL CHECK (next_offset >= 0),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, partition)
);
