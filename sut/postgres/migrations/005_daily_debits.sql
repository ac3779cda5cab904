-- The daily debit limit (docs/limits.md): the settled debits (withdrawals
-- and transfers out) of each user per UTC day, the day of the command's
-- accepted_at, which transactions store, so the auditor recomputes every
-- row from the transactions. The worker reads and writes a user's rows
-- while it holds the lock of the user's account (one account per user, and
-- every debit locks it), so the check and the count are one step in the
-- batch's transaction. A row is written only when a limit is set (or under
-- the seeded bug limit-race, which counts without checking).
CREATE TABLE daily_debits (
    user_id       bigint NOT NULL,
    day           date   NOT NULL,
    debited_minor bigint NOT NULL CHECK (debited_minor >= 0),
    PRIMARY KEY (user_id, day)
);
