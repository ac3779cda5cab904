package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/ledgerproof/ledgerproof/sut/gateway"
	"github.com/ledgerproof/ledgerproof/sut/ledger"
	"github.com/ledgerproof/ledgerproof/sut/redis"
)

// workerQueue is a recordingQueue that, as a worker does after its batch
// commits, writes each command's outcome record to Redis
// (redis.Client.AfterCommit) before acknowledging it: settled, with the
// command's fingerprint unless fingerprint says otherwise.
type workerQueue struct {
	recordingQueue
	cache       *redis.Client
	fingerprint string
}

func (q *workerQueue) Produce(ctx context.Context, key, value []byte) (int32, int64, error) {
	var command ledger.Command
	if err := json.Unmarshal(value, &command); err != nil {
		return -1, -1, err
	}
	notice := ledger.OutcomeNotice{Outcome: ledger.Outcome{TransactionID: command.TransactionID, Status: ledger.StatusSettled},
		Fingerprint: command.Fingerprint}
	if q.fingerprint != "" {
		notice.Fingerprint = q.fingerprint
	}
	if err := q.cache.AfterCommit(ctx, nil, nil, []ledger.OutcomeNotice{notice}, time.Minute); err != nil {
		return -1, -1, err
	}
	return q.recordingQueue.Produce(ctx, key, value)
}

// TestFinalAnswerIsReplayedFromTheOutcomeRecord: a request whose final
// outcome came from the worker's outcome record leaves its idempotency
// record without a response (no second copy of it in Redis), and its retry
// gets the same status and bytes, rendered from the outcome record, marked
// replayed; nothing is queued again. When the outcome belongs to another
// request (another fingerprint), the first answer and the retry's are 422.
func TestFinalAnswerIsReplayedFromTheOutcomeRecord(t *testing.T) {
	t.Parallel()
	for _, test := range []struct {
		name        string
		fingerprint string
		status      int
	}{
		{"the request's outcome", "", http.StatusOK},
		{"another request's outcome", "another request", http.StatusUnprocessableEntity},
	} {
		t.Run(test.name, func(t *testing.T) {
			queue := &workerQueue{fingerprint: test.fingerprint}
			url, token, account, cache := testGatewayWithCache(t, gateway.Config{}, queue)
			queue.cache = cache
			first := postDepositWaiting(t, url, token, "settled-once", account, 5)
			if first.status != test.status || first.replayed {
				t.Fatalf("the first answer: %d replayed=%v %s, want %d not replayed", first.status, first.replayed, first.body, test.status)
			}
			if test.status == http.StatusOK && !bytes.Contains(first.body, []byte(`"status":"settled"`)) {
				t.Fatalf("the first answer's body %s is not the settled outcome", first.body)
			}
			session, found, err := cache.LookupSession(context.Background(), token)
			if err != nil || !found {
				t.Fatalf("session: found=%v err=%v", found, err)
			}
			probe, err := cache.Reserve(context.Background(), session.UserID, "settled-once", redis.IdempotencyRecord{Fingerprint: "probe"}, time.Hour)
			if err != nil || probe.Reserved || probe.Existing.ResponseStatus != 0 || len(probe.Existing.ResponseBody) != 0 {
				t.Fatalf("the idempotency record: %+v err=%v, want the first request's, without a stored response", probe, err)
			}
			retry := postDepositWaiting(t, url, token, "settled-once", account, 5)
			// An error's body carries its request's id: only a 200's bytes
			// are compared.
			if retry.status != first.status || (test.status == http.StatusOK && !bytes.Equal(retry.body, first.body)) {
				t.Fatalf("the retry: %d %s, want the first answer %d %s", retry.status, retry.body, first.status, first.body)
			}
			if test.status == http.StatusOK && !retry.replayed {
				t.Fatalf("the retry's 200 is not marked %s", gateway.ReplayedHeader)
			}
			if produced := queue.produced(); len(produced) != 1 {
				t.Fatalf("%d commands queued, want 1", len(produced))
			}
		})
	}
}

// TestAcceptedTransactionIsPending: a 202 gives the client its transaction's
// id, and GET /v1/transactions/{id} then answers it as accepted until the
// worker applies it: the gateway remembers it as pending with the 202 (and
// not with the reservation, before anyone can know the id).
func TestAcceptedTransactionIsPending(t *testing.T) {
	t.Parallel()
	queue := &recordingQueue{}
	url, token, account, _ := testGatewayWithCache(t, gateway.Config{}, queue)
	accepted := postDeposit(t, url, token, "not-yet-applied", account)
	if accepted.status != http.StatusAccepted || accepted.transactionID == "" {
		t.Fatalf("the deposit: %d %s, want 202 with its transaction", accepted.status, accepted.body)
	}
	request, err := http.NewRequest(http.MethodGet, url+"/v1/transactions/"+accepted.transactionID, nil)
	if err != nil {
		t.Fatal(err)
	}
	request.Header.Set("Authorization", "Bearer "+token)
	response, err := http.DefaultClient.Do(request)
	if err != nil {
		t.Fatal(err)
	}
	defer response.Body.Close()
	var read struct {
		TransactionID string `json:"transaction_id"`
		Status        string `json:"status"`
		Amount        int64  `json:"amount"`
	}
	if err := json.NewDecoder(response.Body).Decode(&read); err != nil || response.StatusCode != http.StatusOK {
		t.Fatalf("GET the accepted transaction: HTTP %d, %v", response.StatusCode, err)
	}
	if read.TransactionID != accepted.transactionID || read.Status != "accepted" || read.Amount != 100 {
		t.Fatalf("GET the accepted transaction: %+v, want %s accepted for 100", read, accepted.transactionID)
	}
}
