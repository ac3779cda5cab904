package gateway

import (
	"sync"

	"github.com/ledgerproof/ledgerproof/sut/ledger"
)

// waiters routes announced outcomes to the requests waiting for them.
type waiters struct {
	mutex   sync.Mutex
	waiting map[string][]chan ledger.OutcomeNotice
}

func newWaiters() *waiters {
	return &waiters{waiting: map[string][]chan ledger.OutcomeNotice{}}
}

// register returns a channel that receives the transaction's outcome, and a
// function to call when no longer waiting.
func (w *waiters) register(transactionID string) (<-chan ledger.OutcomeNotice, func()) {
	channel := make(chan ledger.OutcomeNotice, 1)
	w.mutex.Lock()
	w.waiting[transactionID] = append(w.waiting[transactionID], channel)
	w.mutex.Unlock()
	return channel, func() {
		w.mutex.Lock()
		defer w.mutex.Unlock()
		list := w.waiting[transactionID]
		for i, candidate := range list {
			if candidate == channel {
				list = append(list[:i], list[i+1:]...)
				break
			}
		}
		if len(list) == 0 {
			delete(w.waiting, transactionID)
		} else {
			w.waiting[transactionID] = list
		}
	}
}

func (w *waiters) notify(notice ledger.OutcomeNotice) {
	w.mutex.Lock()
	defer w.mutex.Unlock()
	for _, channel := range w.waiting[notice.TransactionID] {
		select {
		case channel <- notice:
		default:
		}
	}
}
