package gateway

import (
	"testing"

	"github.com/ledgerproof/ledgerproof/sut/ledger"
)

// TestEmailLookAlikes: every look-alike of an address normalises to the
// same key as the original, or is refused; distinct addresses keep distinct
// keys.
func TestEmailLookAlikes(t *testing.T) {
	original := "fiona.jose@example.com"
	want, err := normaliseEmail(original)
	if err != nil {
		t.Fatal(err)
	}
	if want.address != original {
		t.Fatalf("%q is stored as %q", original, want.address)
	}
	sameKey := []struct{ name, email string }{
		{"capitals", "Fiona.Jose@EXAMPLE.com"},
		{"Cyrillic a in the local part", "fiona.jose@ex\u0430mple.com"},
		{"Cyrillic o and e", "fi\u043ena.j\u043es\u0435@example.com"},
		{"fullwidth letters", "\uff46\uff49\uff4f\uff4e\uff41.jose@example.com"},
		{"fullwidth at sign", "fiona.jose\uff20example.com"},
		{"fi ligature", "\ufb01ona.jose@example.com"},
		{"mathematical bold", "\U0001d41fiona.jose@example.com"},
		{"surrounding spaces", "  fiona.jose@example.com "},
		{"Cyrillic domain letter", "fiona.jose@\u0435xample.com"},
	}
	for _, c := range sameKey {
		got, err := normaliseEmail(c.email)
		if err != nil {
			t.Errorf("%s (%+q): refused: %v", c.name, c.email, err)
			continue
		}
		if got.key != want.key {
			t.Errorf("%s (%+q): key %+q, the original's is %+q", c.name, c.email, got.key, want.key)
		}
	}

	accented, err := normaliseEmail("jos\u00e9@example.com")
	if err != nil {
		t.Fatal(err)
	}
	decomposed, err := normaliseEmail("jose\u0301@example.com")
	if err != nil || decomposed.key != accented.key || decomposed.address != accented.address {
		t.Errorf("decomposed accent: %+v %v; precomposed %+v", decomposed, err, accented)
	}

	refused := []struct{ name, email string }{
		{"zero-width space", "fiona\u200b.jose@example.com"},
		{"zero-width joiner", "fiona\u200d.jose@example.com"},
		{"right-to-left override", "fiona\u202e.jose@example.com"},
		{"soft hyphen", "fio\u00adna.jose@example.com"},
		{"Hangul filler", "fiona\u3164@example.com"},
		{"variation selector", "fiona\ufe0f@example.com"},
		{"byte order mark", "\ufefffiona@example.com"},
		{"invalid UTF-8", "fiona\xff@example.com"},
		{"replacement character", "fiona\ufffd@example.com"},
		{"no-break space", "fiona\u00a0jose@example.com"},
		{"control byte", "fiona\x01@example.com"},
		{"no at sign", "fiona.example.com"},
		{"quoted local part", `"fiona jose"@example.com`},
		{"two dots", "fiona..jose@example.com"},
		{"invalid domain", "fiona@exa_mple.com"},
		{"empty domain", "fiona@"},
		{"display name", "Fiona <fiona@example.com>"},
	}
	for _, c := range refused {
		if got, err := normaliseEmail(c.email); ledger.ErrorCode(err) != ledger.CodeInvalidEmail {
			t.Errorf("%s (%+q): %+v %v, want invalid_email", c.name, c.email, got, err)
		} else if problem := messageProblem(ledger.ErrorMessage(err)); problem != "" {
			t.Errorf("%s: message %q: %s", c.name, ledger.ErrorMessage(err), problem)
		}
	}

	distinct := []string{"fiona@example.com", "fiona@example.org", "fiona2@example.com", "f.iona@example.com", "fiona@ex.ample.com"}
	keys := map[string]string{}
	for _, email := range distinct {
		got, err := normaliseEmail(email)
		if err != nil {
			t.Fatalf("%s: %v", email, err)
		}
		if other, taken := keys[got.key]; taken {
			t.Errorf("%s and %s share the key %q", email, other, got.key)
		}
		keys[got.key] = email
	}

	idn, err := normaliseEmail("user@b\u00fccher.example")
	if err != nil || idn.address != "user@xn--bcher-kva.example" {
		t.Errorf("an internationalised domain is stored as %+v %v, want its ASCII form", idn, err)
	}
}
