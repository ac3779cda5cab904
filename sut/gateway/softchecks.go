package gateway

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/ledgerproof/ledgerproof/sut/ledger"
	"github.com/ledgerproof/ledgerproof/sut/redis"
)

// The gateway's soft checks (docs/limits.md): before a debit is queued, the
// gateway may refuse it at once from what Redis knows, sparing the queue
// and the worker a command the ledger would reject. Postgres stays the
// authority: the worker checks balances and the daily limit again under its
// locks, and a soft check that cannot read the cache lets the debit through.
// A soft refusal is recorded in the ledger as a rejected transaction
// (Rejections.RecordRejection), so it is final and every replay of the key
// gets it, as a worker's rejection would be. A soft overdraft refusal has
// the worker's reason, insufficient_funds (clients need not know which tier
// refused); the ledger row tells it apart: it has no stream position
// (kafka_partition and kafka_offset -1).

// LimitCache is what the soft checks read from Redis (redis.Client).
type LimitCache interface {
	// CachedBalance is the account's balance as the workers last cached
	// it: a balance the ledger held at some moment, never a newer one.
	CachedBalance(ctx context.Context, accountID int64) (balance int64, found bool, err error)
	// CachedDailyDebits is the user's settled debits of the UTC day as the
	// workers last counted them: at most the ledger's current total.
	CachedDailyDebits(ctx context.Context, userID int64, day time.Time) (debitedMinor int64, found bool, err error)
}

// Rejections records the gateway's soft refusals in the ledger
// (postgres.Store).
type Rejections interface {
	RecordRejection(ctx context.Context, command ledger.Command, reason ledger.Code) (ledger.Transaction, error)
}

// softChecksOn reports whether any soft check is configured.
func (c *Config) softChecksOn() bool {
	return c.SoftBalanceCheck || c.DailyDebitLimitMinor > 0
}

// softReads names the cached figures the soft checks need for a command
// (none for a command they do not check).
func (g *Gateway) softReads(command ledger.Command) redis.CachedReads {
	if !ledger.CountsAgainstDailyLimit(command.Kind) || g.limitCache == nil {
		return redis.CachedReads{}
	}
	var reads redis.CachedReads
	if g.config.SoftBalanceCheck {
		reads.Balance, reads.AccountID = true, command.SourceAccountID
	}
	// A debit above the limit by itself needs no cache: the day's settled
	// debits are never below zero.
	if limit := g.config.DailyDebitLimitMinor; limit > 0 && command.AmountMinor <= limit {
		reads.DailyDebits, reads.UserID, reads.Day = true, command.UserID, ledger.DebitDay(command.AcceptedAt)
	}
	return reads
}

// softRefusal returns the reason the soft checks refuse a debit for, or ""
// when they let it through (not a debit, nothing cached, the cache down).
// The balance comes first, as in the worker. claim holds the figures read
// with the key's reservation (Gateway.softReadsWithReservation); a figure it
// lacks is read here.
func (g *Gateway) softRefusal(ctx context.Context, command ledger.Command, claim keyClaim) ledger.Code {
	if !ledger.CountsAgainstDailyLimit(command.Kind) || g.limitCache == nil {
		return ""
	}
	reads := g.softReads(command)
	if reads.Balance {
		figure := claim.balance
		if !figure.Read {
			figure.Read = true
			figure.Value, figure.Found, figure.Err = g.limitCache.CachedBalance(ctx, command.SourceAccountID)
		}
		if figure.Err != nil {
			g.metrics.cacheErrors.Inc()
		} else if figure.Found && figure.Value < command.AmountMinor {
			return ledger.CodeInsufficientFunds
		}
	}
	if limit := g.config.DailyDebitLimitMinor; limit > 0 {
		if command.AmountMinor > limit {
			return ledger.CodeDailyLimitExceeded
		}
		figure := claim.dailyDebits
		if !figure.Read {
			figure.Read = true
			figure.Value, figure.Found, figure.Err = g.limitCache.CachedDailyDebits(ctx, command.UserID, reads.Day)
		}
		if figure.Err != nil {
			g.metrics.cacheErrors.Inc()
		} else if figure.Found && figure.Value > limit-command.AmountMinor {
			return ledger.CodeDailyLimitExceeded
		}
	}
	return ""
}

// refuseSoftly answers a claimed debit the soft checks refused: the
// rejection is recorded in the ledger and answered as the transaction
// resource with status rejected (200), the bytes a replay from the ledger
// gives. answered is false when the ledger could not record it: the command
// is then queued, and the worker decides.
func (g *Gateway) refuseSoftly(ctx context.Context, command ledger.Command, claim keyClaim, reason ledger.Code) (status int, body []byte, answered bool, err error) {
	stored, err := g.rejectionsOf(command.PartitionKey()).RecordRejection(ctx, command, reason)
	if err != nil {
		g.logger.Debug("a soft refusal could not be recorded; queueing the command", "transaction_id", command.TransactionID, "reason", reason, "error", err)
		return 0, nil, false, nil
	}
	if stored.ID != command.TransactionID {
		panic(fmt.Sprintf("gateway: recorded a rejection of %s, the ledger answered for %s", command.TransactionID, stored.ID))
	}
	if stored.Fingerprint != command.Fingerprint {
		g.release(ctx, command, claim.reservedByUs)
		g.metrics.keyReused.Inc()
		return 0, nil, true, keyReused(command)
	}
	status, body = http.StatusOK, responseOf(stored).body()
	if claim.cacheUp {
		g.remember(ctx, command, claim.record, status, body)
	}
	return status, body, true, nil
}
