package invariants

import (
	"testing"
	"unsafe"
)

// TestCompactState guards the per-operation and per-row sizes the memory
// figures of docs/audit.md rely on.
func TestCompactState(t *testing.T) {
	if size := unsafe.Sizeof(operation{}); size > 72 {
		t.Errorf("operation is %d bytes, want at most 72", size)
	}
	if size := unsafe.Sizeof(txRow{}); size > 88 {
		t.Errorf("txRow is %d bytes, want at most 88", size)
	}
	if size := unsafe.Sizeof(keyState{}); size > 32 {
		t.Errorf("keyState is %d bytes, want at most 32", size)
	}
}
