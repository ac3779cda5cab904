package gateway

import (
	"context"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/mtibben/confusables"
	"golang.org/x/net/idna"
	"golang.org/x/text/cases"
	"golang.org/x/text/unicode/norm"

	"github.com/ledgerproof/ledgerproof/sut/ledger"
)

// Emails name accounts, so two addresses a person reads as the same must be
// one account (docs/security.md, "Look-alike emails"). An email is:
//
//  1. refused if it is not valid UTF-8 or holds an invisible or control
//     character (zero-width spaces and joiners, bidirectional controls,
//     soft hyphens, variation selectors, Hangul fillers: every format,
//     control, private-use, surrogate, unassigned and default-ignorable
//     code point), before and after the mapping below;
//  2. mapped to NFKC, case folded, and mapped to NFKC again (Unicode's
//     NFKC_Casefold, up to the ignorables already refused): fullwidth
//     letters, ligatures, decomposed accents and capitals become the plain
//     lower-case letters;
//  3. split at its last "@": the local part must be a dot-atom (RFC 5322's
//     printable ASCII, or Unicode letters, marks and digits, RFC 6531), the
//     domain must pass IDNA (UTS #46, non-transitional, the lookup profile
//     of golang.org/x/net/idna) and is stored in its ASCII form;
//  4. unique on its Unicode TR39 skeleton: each character is replaced by
//     the prototype of its confusables class (Cyrillic "а" by Latin "a",
//     digit one by "l", "m" by "rn"), so the skeleton of a look-alike is
//     the skeleton of the original and signup answers 409 email_taken.
//
// The skeleton rather than ASCII-only local parts: both close the Cyrillic
// look-alikes, but ASCII-only would refuse internationalised addresses
// (RFC 6531) and would leave look-alike domains (IDNA accepts a Cyrillic
// "exаmple.com", a real and different domain) and ASCII confusables ("rn"
// and "m", "l" and "1") open. The cost: two honest addresses whose
// skeletons meet ("bob1@" and "bobl@") cannot both have accounts; the
// second is told the email is taken. The skeleton is only compared, never
// shown or stored as the address (TR39 says a skeleton is not a
// normalisation).

// emailMaximum is the longest email accepted, in bytes of the stored
// address (RFC 5321's path limit less the brackets).
const emailMaximum = 254

// localPartMaximum is RFC 5321's limit on the local part, in bytes.
const localPartMaximum = 64

// emailProfile is IDNA's lookup profile: UTS #46 mapping, non-transitional
// (ß stays ß), the bidi rule, label validation and STD 3 host names.
var emailProfile = idna.New(idna.MapForLookup(), idna.Transitional(false), idna.BidiRule(),
	idna.ValidateLabels(true), idna.StrictDomainName(true), idna.VerifyDNSLength(true))

// caseFolder folds case for comparison (Unicode full case folding). A
// cases.Caser keeps state, so each use builds its own (cases.Fold is cheap).
func caseFold(text string) string { return cases.Fold().String(text) }

// normalisedEmail is an email as stored, and its uniqueness key.
type normalisedEmail struct {
	// address is NFKC_Casefold local part, "@", the ASCII (IDNA) domain.
	address string
	// key is the TR39 skeleton of the local part and the Unicode domain.
	key string
}

// invalidEmail is the one error of a refused email; reason is ASCII.
func invalidEmail(reason string) error {
	return ledger.Errorf(ledger.CodeInvalidEmail, "the email is not a valid address: %s", reason)
}

// normaliseEmail checks and normalises an email as the rules above say.
// Its errors are invalid_email, with ASCII messages that name the problem
// (and a code point in U+ notation) without echoing the email.
func normaliseEmail(raw string) (normalisedEmail, error) {
	if !utf8.ValidString(raw) {
		return normalisedEmail{}, invalidEmail("it is not valid UTF-8")
	}
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return normalisedEmail{}, invalidEmail("it is empty")
	}
	if len(raw) > 4*emailMaximum {
		return normalisedEmail{}, invalidEmail(fmt.Sprintf("it is longer than %d bytes", emailMaximum))
	}
	if err := refuseInvisible(raw); err != nil {
		return normalisedEmail{}, err
	}
	mapped := norm.NFKC.String(caseFold(norm.NFKC.String(raw)))
	if err := refuseInvisible(mapped); err != nil {
		return normalisedEmail{}, err
	}
	at := strings.LastIndexByte(mapped, '@')
	if at < 0 {
		return normalisedEmail{}, invalidEmail("it has no @")
	}
	local, domain := mapped[:at], mapped[at+1:]
	if err := checkLocalPart(local); err != nil {
		return normalisedEmail{}, err
	}
	asciiDomain, err := emailProfile.ToASCII(domain)
	if err != nil || asciiDomain == "" || strings.HasSuffix(asciiDomain, ".") {
		return normalisedEmail{}, invalidEmail("the domain is not a valid internationalised domain name")
	}
	unicodeDomain, err := emailProfile.ToUnicode(asciiDomain)
	if err != nil {
		return normalisedEmail{}, invalidEmail("the domain is not a valid internationalised domain name")
	}
	address := local + "@" + asciiDomain
	if len(address) > emailMaximum {
		return normalisedEmail{}, invalidEmail(fmt.Sprintf("it is longer than %d bytes", emailMaximum))
	}
	return normalisedEmail{address: address, key: emailKey(local, unicodeDomain)}, nil
}

// emailKey is the uniqueness key of a normalised local part and Unicode
// domain: the TR39 skeleton of the whole address.
func emailKey(local, unicodeDomain string) string {
	return confusables.Skeleton(local + "@" + unicodeDomain)
}

// refuseInvisible refuses a control, format, private-use, surrogate,
// unassigned or default-ignorable code point, and any space inside.
func refuseInvisible(text string) error {
	for _, r := range text {
		if invisible(r) {
			return invalidEmail(fmt.Sprintf("it holds the invisible or control character U+%04X", r))
		}
		if unicode.IsSpace(r) {
			return invalidEmail(fmt.Sprintf("it holds the space U+%04X", r))
		}
	}
	return nil
}

// invisible reports whether r is a code point no one can see or that has
// no meaning in an address: Cc, Cf, Co, Cs, unassigned, a variation
// selector or another default-ignorable code point (Hangul fillers, the
// combining grapheme joiner).
func invisible(r rune) bool {
	switch {
	case r == utf8.RuneError:
		return true
	case unicode.In(r, unicode.Cc, unicode.Cf, unicode.Co, unicode.Cs, unicode.Variation_Selector,
		unicode.Other_Default_Ignorable_Code_Point):
		return true
	case !unicode.In(r, unicode.L, unicode.M, unicode.N, unicode.P, unicode.S, unicode.Z):
		// Unassigned (Cn) in the Unicode version of this Go.
		return true
	}
	return false
}

// atextSpecials are the printable ASCII characters of an RFC 5322 atom
// besides letters and digits.
const atextSpecials = "!#$%&'*+/=?^_`{|}~-"

// checkLocalPart accepts a dot-atom: atoms of ASCII atext or Unicode
// letters, marks and digits, joined by single dots. Quoted local parts and
// comments are refused: they let one mailbox be written many ways.
func checkLocalPart(local string) error {
	switch {
	case local == "":
		return invalidEmail("the part before the @ is empty")
	case len(local) > localPartMaximum:
		return invalidEmail(fmt.Sprintf("the part before the @ is longer than %d bytes", localPartMaximum))
	case local[0] == '.' || local[len(local)-1] == '.' || strings.Contains(local, ".."):
		return invalidEmail("the part before the @ has a dot at an end or two dots in a row")
	}
	for _, r := range local {
		switch {
		case r == '.':
		case r < utf8.RuneSelf && ('a' <= r && r <= 'z' || '0' <= r && r <= '9' || strings.ContainsRune(atextSpecials, r)):
		case r >= utf8.RuneSelf && unicode.In(r, unicode.L, unicode.M, unicode.N):
		default:
			return invalidEmail(fmt.Sprintf("the part before the @ holds U+%04X, which an address may not hold", r))
		}
	}
	return nil
}

// backfillBatch is how many users without an email key one query reads.
const backfillBatch = 1000

// backfillEmailKeys gives every user created without an email key (before
// migration 003) its key, once at start, so look-alikes of their emails
// are refused too. A user whose email is no longer accepted, or whose key
// another user holds (two old accounts a person reads as one address),
// keeps none and is logged: it still signs in by its stored email.
func (g *Gateway) backfillEmailKeys(ctx context.Context) {
	var afterID int64
	given := 0
	for ctx.Err() == nil {
		users, err := g.store.UsersWithoutEmailKey(ctx, afterID, backfillBatch)
		if err != nil {
			g.logger.Warn("could not read the users without an email key; they get one at the next start", "error", err)
			return
		}
		for _, user := range users {
			afterID = user.ID
			email, err := normaliseEmail(user.Email)
			if err != nil {
				g.logger.Warn("a user's email is no longer accepted; it keeps no email key", "user_id", user.ID, "error", err)
				continue
			}
			if err := g.store.SetEmailKey(ctx, user.ID, email.key); err != nil {
				g.logger.Warn("could not give a user its email key", "user_id", user.ID, "error", err)
				continue
			}
			given++
		}
		if len(users) < backfillBatch {
			break
		}
	}
	if given > 0 {
		g.logger.Info("gave users created without one their email key", "users", given)
	}
}
