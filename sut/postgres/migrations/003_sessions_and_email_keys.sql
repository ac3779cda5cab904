-- Revocable sessions and look-alike-proof emails (docs/security.md).

-- email_key is the email's uniqueness key: the Unicode TR39 skeleton of the
-- normalised address (sut/gateway/email.go), so two addresses a person reads
-- as the same cannot both sign up. A user created before this migration has
-- none until a gateway computes it (gateway: backfill at start); NULLs are
-- distinct, so they never collide.
--
-- sessions_valid_after ends sessions: a token issued at or before it is
-- refused by every gateway (sign-out sets it to now(); an operator may set
-- it to any time). sessions_changed_at is when it last changed, by the
-- database's clock, set by the trigger below whoever writes the row: each
-- gateway reads the rows changed since its last look, every second or so.
ALTER TABLE users
    ADD COLUMN email_key            text,
    ADD COLUMN sessions_valid_after timestamptz NOT NULL DEFAULT '-infinity',
    ADD COLUMN sessions_changed_at  timestamptz NOT NULL DEFAULT '-infinity';
CREATE UNIQUE INDEX users_by_email_key ON users (email_key);
CREATE INDEX users_by_sessions_changed_at ON users (sessions_changed_at) WHERE sessions_changed_at > '-infinity';

CREATE FUNCTION users_sessions_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.sessions_changed_at := clock_timestamp();
    RETURN NEW;
END
$$;
CREATE TRIGGER users_sessions_changed BEFORE UPDATE OF sessions_valid_after ON users
    FOR EACH ROW WHEN (OLD.sessions_valid_after IS DISTINCT FROM NEW.sessions_valid_after)
    EXECUTE FUNCTION users_sessions_changed();

-- The sessions, so that a token stays valid on every gateway whatever Redis
-- (their fast path) lost. The token itself is not stored, only its SHA-256:
-- a copy of this table signs nobody in. issued_at is the database's clock,
-- the clock sessions_valid_after is compared with.
CREATE TABLE sessions (
    token_hash bytea       PRIMARY KEY,
    user_id    bigint      NOT NULL REFERENCES users (id),
    account_id bigint      NOT NULL,
    issued_at  timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
CREATE INDEX sessions_by_user ON sessions (user_id);
CREATE INDEX sessions_by_expiry ON sessions (expires_at);
