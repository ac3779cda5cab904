-- Records of the commands topic that cannot be applied: undecodable bytes,
-- a command that fails validation before it can name a transaction, a
-- transaction id that collides with another request's (user, key). Each is
-- written in the same transaction that moves the partition's offset past it,
-- so a poison record never blocks its partition and is never lost silently.
CREATE TABLE dead_letters (
    id              bigserial   PRIMARY KEY,
    topic           text        NOT NULL,
    kafka_partition integer     NOT NULL,
    kafka_offset    bigint      NOT NULL,
    raw             bytea       NOT NULL,
    reason          text        NOT NULL,
    -- The transaction the record named, when it decoded far enough to name
    -- one (NULL otherwise): the audit matches it against the journal.
    transaction_id  uuid,
    dead_at         timestamptz NOT NULL DEFAULT now(),
    UNIQUE (topic, kafka_partition, kafka_offset)
);
