package ledger

import (
	"errors"
	"fmt"
	"math"
	"net/url"
	"strings"
	"time"

	"github.com/grafana/sobek"
	"go.k6.io/k6/js/common"
	"go.k6.io/k6/lib/types"
)

// This file turns JS arguments into checked Go values. It knows nothing of HTTP or the journal: every error it
// returns names the argument and says what was expected, so a script author sees at once what to fix.

// Limits of the arguments, as the gateway enforces them (sut/openapi.yaml).
const (
	// amountMaximumMinor is ledger.MaxAmountMinor: 1,000,000,000.00 in a two-decimal currency.
	amountMaximumMinor = 100_000_000_000
	// maxSafeInteger is the largest integer a JS number holds exactly (2^53 - 1).
	maxSafeInteger = 1<<53 - 1
	// maxAttemptsLimit bounds the retry policy: more attempts only hide a broken system.
	maxAttemptsLimit = 100
	// prepareCountLimit bounds prepareAccounts: a million users is a database load, not a setup step.
	prepareCountLimit = 1_000_000
	// prepareConcurrencyLimit bounds the goroutines of prepareAccounts.
	prepareConcurrencyLimit = 1024
)

// Duplicate modes (ClientOptions.duplicateMode).
const (
	duplicateConcurrent = "concurrent"
	duplicateDelayed    = "delayed"
)

// retryPolicy is ClientOptions.retry after defaults.
type retryPolicy struct {
	// maxAttempts counts the first attempt. Default 3: one timeout and one 5xx are survivable, a dead gateway
	// is not hidden for long.
	maxAttempts int
	// backoff is the first wait between attempts. Default 50ms; it doubles each attempt.
	backoff time.Duration
	// maxBackoff caps one wait, also when the server asks for more with Retry-After. Default 1s.
	maxBackoff time.Duration
	// jitter spreads each wait over [1-jitter, 1+jitter] times its nominal value. Default 0.5, so that
	// clients that failed together do not retry together.
	jitter float64
}

// clientOptions is ClientOptions after defaults and validation.
type clientOptions struct {
	baseURLs []string
	// timeout bounds one HTTP request. Default 10s.
	timeout time.Duration
	// wait is the bounded wait asked with "Prefer: wait=N". Default 5s; it must be shorter than timeout.
	wait  time.Duration
	retry retryPolicy
	// duplicateRate is the fraction of money operations sent twice. Default 0.
	duplicateRate float64
	// duplicateMode is duplicateConcurrent (default) or duplicateDelayed.
	duplicateMode string
	// duplicateDelay is how long after the original's answer a delayed duplicate is sent. Default 100ms.
	duplicateDelay time.Duration
	// misuseRate is the fraction of money operations followed by a key misuse. Default 0.
	misuseRate float64
	// seed seeds the client's random choices; seedSet is false when the process default applies.
	seed    int64
	seedSet bool
	// runDir is where the journal goes; empty means no journal.
	runDir string
}

// operationOptions is OperationOptions after defaults.
type operationOptions struct {
	key  string
	wait time.Duration
}

// prepareOptions is PrepareOptions after defaults.
type prepareOptions struct {
	count        int
	fundingMinor int64
	concurrency  int
	emailPrefix  string
	password     string
}

// session is a Session passed back from JS.
type session struct {
	token     string
	userID    int64
	accountID int64
	email     string
}

var clientOptionNames = []string{
	"baseURL", "baseURLs", "timeout", "wait", "retry", "duplicateRate", "duplicateMode", "duplicateDelay",
	"misuseRate", "seed", "journal", "runDir",
}

// parseClientOptions checks the argument of new Client(...). environmentRunDir is LEDGER_RUN_DIR as the script
// sees it (__ENV).
func parseClientOptions(rt *sobek.Runtime, value sobek.Value, environmentRunDir string) (clientOptions, error) {
	options := clientOptions{
		timeout:        10 * time.Second,
		wait:           5 * time.Second,
		retry:          retryPolicy{maxAttempts: 3, backoff: 50 * time.Millisecond, maxBackoff: time.Second, jitter: 0.5},
		duplicateMode:  duplicateConcurrent,
		duplicateDelay: 100 * time.Millisecond,
	}
	object, err := objectArgument(rt, "Client options", value, clientOptionNames)
	if err != nil {
		return options, err
	}
	if object == nil {
		return options, errors.New("new Client(options): options are required, with at least baseURL or baseURLs")
	}
	if v := object.Get("baseURL"); !common.IsNullish(v) {
		base, err := baseURLArgument("options.baseURL", v)
		if err != nil {
			return options, err
		}
		options.baseURLs = append(options.baseURLs, base)
	}
	if v := object.Get("baseURLs"); !common.IsNullish(v) {
		list, ok := v.Export().([]any)
		if !ok {
			return options, fmt.Errorf("options.baseURLs must be an array of URL strings, got %s", describe(v))
		}
		for i := range list {
			base, err := baseURLArgument(fmt.Sprintf("options.baseURLs[%d]", i), rt.ToValue(list[i]))
			if err != nil {
				return options, err
			}
			options.baseURLs = append(options.baseURLs, base)
		}
	}
	if len(options.baseURLs) == 0 {
		return options, errors.New("new Client(options): options.baseURL or options.baseURLs is required (e.g. \"http://127.0.0.1:58080\")")
	}
	if options.timeout, err = durationOption(object, "timeout", options.timeout, false); err != nil {
		return options, err
	}
	if options.wait, err = durationOption(object, "wait", options.wait, true); err != nil {
		return options, err
	}
	if options.wait >= options.timeout {
		return options, fmt.Errorf("options.wait (%s) must be shorter than options.timeout (%s): the request would time out before the gateway answers", options.wait, options.timeout)
	}
	if options.retry, err = parseRetry(rt, object.Get("retry"), options.retry); err != nil {
		return options, err
	}
	if options.duplicateRate, err = rateOption(object, "duplicateRate"); err != nil {
		return options, err
	}
	if options.misuseRate, err = rateOption(object, "misuseRate"); err != nil {
		return options, err
	}
	if v := object.Get("duplicateMode"); !common.IsNullish(v) {
		mode, ok := v.Export().(string)
		if !ok || (mode != duplicateConcurrent && mode != duplicateDelayed) {
			return options, fmt.Errorf("options.duplicateMode must be \"concurrent\" or \"delayed\", got %s", describe(v))
		}
		options.duplicateMode = mode
	}
	if options.duplicateDelay, err = durationOption(object, "duplicateDelay", options.duplicateDelay, true); err != nil {
		return options, err
	}
	if v := object.Get("seed"); !common.IsNullish(v) {
		seed, err := integerArgument("options.seed", v, math.MinInt64, math.MaxInt64)
		if err != nil {
			return options, err
		}
		options.seed, options.seedSet = seed, true
	}
	options.runDir = environmentRunDir
	if v := object.Get("runDir"); !common.IsNullish(v) {
		dir, ok := v.Export().(string)
		if !ok || strings.TrimSpace(dir) == "" {
			return options, fmt.Errorf("options.runDir must be a non-empty directory path, got %s", describe(v))
		}
		options.runDir = dir
	}
	if v := object.Get("journal"); !common.IsNullish(v) {
		enabled, ok := v.Export().(bool)
		if !ok {
			return options, fmt.Errorf("options.journal must be true or false, got %s", describe(v))
		}
		if enabled && options.runDir == "" {
			return options, errors.New("options.journal is true but there is no run directory: set options.runDir or the environment variable LEDGER_RUN_DIR")
		}
		if !enabled {
			options.runDir = ""
		}
	}
	return options, nil
}

var retryOptionNames = []string{"maxAttempts", "backoff", "maxBackoff", "jitter"}

func parseRetry(rt *sobek.Runtime, value sobek.Value, policy retryPolicy) (retryPolicy, error) {
	object, err := objectArgument(rt, "options.retry", value, retryOptionNames)
	if err != nil || object == nil {
		return policy, err
	}
	if v := object.Get("maxAttempts"); !common.IsNullish(v) {
		attempts, err := integerArgument("options.retry.maxAttempts", v, 1, maxAttemptsLimit)
		if err != nil {
			return policy, err
		}
		policy.maxAttempts = int(attempts)
	}
	if policy.backoff, err = durationOption(object, "backoff", policy.backoff, true); err != nil {
		return policy, fmt.Errorf("options.retry: %w", err)
	}
	if policy.maxBackoff, err = durationOption(object, "maxBackoff", policy.maxBackoff, true); err != nil {
		return policy, fmt.Errorf("options.retry: %w", err)
	}
	if policy.maxBackoff < policy.backoff {
		return policy, fmt.Errorf("options.retry.maxBackoff (%s) must not be shorter than options.retry.backoff (%s)", policy.maxBackoff, policy.backoff)
	}
	if v := object.Get("jitter"); !common.IsNullish(v) {
		jitter, ok := number(v)
		if !ok || jitter < 0 || jitter > 1 {
			return policy, fmt.Errorf("options.retry.jitter must be a number from 0 to 1, got %s", describe(v))
		}
		policy.jitter = jitter
	}
	return policy, nil
}

var operationOptionNames = []string{"key", "wait"}

// parseOperationOptions checks the optional last argument of a money operation.
func parseOperationOptions(rt *sobek.Runtime, value sobek.Value, client clientOptions) (operationOptions, error) {
	options := operationOptions{wait: client.wait}
	object, err := objectArgument(rt, "operation options", value, operationOptionNames)
	if err != nil || object == nil {
		return options, err
	}
	if v := object.Get("key"); !common.IsNullish(v) {
		key, ok := v.Export().(string)
		if !ok || !validIdempotencyKey(key) {
			return options, fmt.Errorf("options.key must be an idempotency key of 1 to 255 printable ASCII characters without spaces, got %s", describe(v))
		}
		options.key = key
	}
	if options.wait, err = durationOption(object, "wait", options.wait, true); err != nil {
		return options, err
	}
	if options.wait >= client.timeout {
		return options, fmt.Errorf("options.wait (%s) must be shorter than the client's timeout (%s)", options.wait, client.timeout)
	}
	return options, nil
}

var prepareOptionNames = []string{"count", "funding", "concurrency", "emailPrefix", "password"}

// parsePrepareOptions checks the argument of prepareAccounts.
func parsePrepareOptions(rt *sobek.Runtime, value sobek.Value) (prepareOptions, error) {
	options := prepareOptions{fundingMinor: 1_000_000, concurrency: 32, emailPrefix: "k6", password: "ledgerproof-load-test"}
	object, err := objectArgument(rt, "prepareAccounts options", value, prepareOptionNames)
	if err != nil {
		return options, err
	}
	if object == nil || common.IsNullish(object.Get("count")) {
		return options, errors.New("prepareAccounts(options): options.count (the number of users) is required")
	}
	count, err := integerArgument("options.count", object.Get("count"), 1, prepareCountLimit)
	if err != nil {
		return options, err
	}
	options.count = int(count)
	if v := object.Get("funding"); !common.IsNullish(v) {
		if options.fundingMinor, err = amountArgument("options.funding", v); err != nil {
			return options, err
		}
	}
	if v := object.Get("concurrency"); !common.IsNullish(v) {
		concurrency, err := integerArgument("options.concurrency", v, 1, prepareConcurrencyLimit)
		if err != nil {
			return options, err
		}
		options.concurrency = int(concurrency)
	}
	if v := object.Get("emailPrefix"); !common.IsNullish(v) {
		prefix, ok := v.Export().(string)
		if !ok || prefix == "" || len(prefix) > 64 || strings.ContainsAny(prefix, "@ \t\r\n\"<>(),;:\\[]") {
			return options, fmt.Errorf("options.emailPrefix must be 1 to 64 characters usable before the @ of an email address, got %s", describe(v))
		}
		options.emailPrefix = prefix
	}
	if v := object.Get("password"); !common.IsNullish(v) {
		password, ok := v.Export().(string)
		if !ok || len([]rune(password)) < 8 || len([]rune(password)) > 256 {
			return options, fmt.Errorf("options.password must be a string of 8 to 256 characters, got %s", describe(v))
		}
		options.password = password
	}
	return options, nil
}

// parseSession checks a Session object (as returned by signin or prepareAccounts).
func parseSession(rt *sobek.Runtime, value sobek.Value) (session, error) {
	var s session
	if common.IsNullish(value) {
		return s, errors.New("session is required: pass the object returned by signin() or prepareAccounts()")
	}
	if _, ok := value.(*sobek.Object); !ok {
		return s, fmt.Errorf("session must be the object returned by signin() or prepareAccounts(), got %s", describe(value))
	}
	object := value.ToObject(rt)
	token, ok := exportString(object.Get("token"))
	if !ok || token == "" {
		return s, errors.New("session.token must be a non-empty string: pass the object returned by signin() or prepareAccounts()")
	}
	s.token = token
	var err error
	if s.userID, err = integerArgument("session.userId", object.Get("userId"), 1, maxSafeInteger); err != nil {
		return s, err
	}
	if s.accountID, err = integerArgument("session.accountId", object.Get("accountId"), 1, maxSafeInteger); err != nil {
		return s, err
	}
	if email := object.Get("email"); email != nil && !common.IsNullish(email) {
		s.email = email.String()
	}
	return s, nil
}

// credentialsArguments checks the email and password of signup and signin. The gateway judges their content;
// here only their types are checked, so that its validation errors reach the script as they are.
func credentialsArguments(email, password sobek.Value) (string, string, error) {
	emailText, ok := exportString(email)
	if !ok {
		return "", "", fmt.Errorf("email must be a string, got %s", describe(email))
	}
	passwordText, ok := exportString(password)
	if !ok {
		return "", "", fmt.Errorf("password must be a string, got %s", describe(password))
	}
	return emailText, passwordText, nil
}

// transactionIDArgument checks the id passed to transaction().
func transactionIDArgument(value sobek.Value) (string, error) {
	id, ok := exportString(value)
	if !ok || id == "" {
		return "", fmt.Errorf("transactionId must be a non-empty string, got %s", describe(value))
	}
	return id, nil
}

// amountArgument checks an amount: an integer number of minor units in [1, 100000000000].
func amountArgument(name string, value sobek.Value) (int64, error) {
	return integerArgument(name, value, 1, amountMaximumMinor)
}

// accountArgument checks an account id: a positive integer.
func accountArgument(name string, value sobek.Value) (int64, error) {
	return integerArgument(name, value, 1, maxSafeInteger)
}

// integerArgument accepts a JS number that is an integer within [minimum, maximum]. Strings, floats with a
// fraction, NaN and infinities are refused: money and ids are never guessed from loose input.
func integerArgument(name string, value sobek.Value, minimum, maximum int64) (int64, error) {
	if common.IsNullish(value) {
		return 0, fmt.Errorf("%s is required: an integer from %d to %d", name, minimum, maximum)
	}
	var n int64
	switch v := value.Export().(type) {
	case int64:
		n = v
	case float64:
		if math.IsNaN(v) || math.IsInf(v, 0) || v != math.Trunc(v) {
			return 0, fmt.Errorf("%s must be an integer, got %v", name, v)
		}
		if v < float64(minimum) || v > float64(maximum) {
			return 0, fmt.Errorf("%s must be an integer from %d to %d, got %v", name, minimum, maximum, v)
		}
		n = int64(v)
	default:
		return 0, fmt.Errorf("%s must be an integer number, got %s", name, describe(value))
	}
	if n < minimum || n > maximum {
		return 0, fmt.Errorf("%s must be an integer from %d to %d, got %d", name, minimum, maximum, n)
	}
	return n, nil
}

// number returns the value of a JS number.
func number(value sobek.Value) (float64, bool) {
	switch v := value.Export().(type) {
	case int64:
		return float64(v), true
	case float64:
		return v, !math.IsNaN(v)
	}
	return 0, false
}

func rateOption(object *sobek.Object, name string) (float64, error) {
	v := object.Get(name)
	if common.IsNullish(v) {
		return 0, nil
	}
	rate, ok := number(v)
	if !ok || rate < 0 || rate > 1 {
		return 0, fmt.Errorf("options.%s must be a number from 0 to 1 (a fraction of operations), got %s", name, describe(v))
	}
	return rate, nil
}

// durationOption reads a duration: a string k6 understands ("250ms", "5s") or a number of milliseconds.
func durationOption(object *sobek.Object, name string, fallback time.Duration, zeroAllowed bool) (time.Duration, error) {
	v := object.Get(name)
	if common.IsNullish(v) {
		return fallback, nil
	}
	var duration time.Duration
	var err error
	switch exported := v.Export().(type) {
	case string:
		duration, err = types.ParseExtendedDuration(exported)
	case int64, float64:
		milliseconds, _ := number(v)
		if math.IsNaN(milliseconds) || math.IsInf(milliseconds, 0) || math.Abs(milliseconds) > float64(math.MaxInt64/int64(time.Millisecond)) {
			err = errors.New("not a finite number of milliseconds")
		} else {
			duration = time.Duration(milliseconds * float64(time.Millisecond))
		}
	default:
		err = errors.New("not a string or a number")
	}
	if err != nil {
		return 0, fmt.Errorf("options.%s must be a duration such as \"250ms\" or \"5s\", or a number of milliseconds, got %s (%v)", name, describe(v), err)
	}
	if duration < 0 || (duration == 0 && !zeroAllowed) {
		return 0, fmt.Errorf("options.%s must be a positive duration, got %s", name, duration)
	}
	return duration, nil
}

func baseURLArgument(name string, value sobek.Value) (string, error) {
	text, ok := exportString(value)
	if !ok {
		return "", fmt.Errorf("%s must be a URL string such as \"http://127.0.0.1:58080\", got %s", name, describe(value))
	}
	parsed, err := url.Parse(text)
	if err != nil || (parsed.Scheme != "http" && parsed.Scheme != "https") || parsed.Host == "" || parsed.RawQuery != "" || parsed.Fragment != "" {
		return "", fmt.Errorf("%s must be an http(s) URL of a gateway such as \"http://127.0.0.1:58080\", got %q", name, text)
	}
	return strings.TrimRight(text, "/"), nil
}

// objectArgument returns value as an object (nil when it is undefined or null) after checking that it holds
// only known keys: a misspelt option must not be silently ignored.
func objectArgument(rt *sobek.Runtime, name string, value sobek.Value, known []string) (*sobek.Object, error) {
	if common.IsNullish(value) {
		return nil, nil
	}
	object, ok := value.(*sobek.Object)
	if !ok {
		return nil, fmt.Errorf("%s must be an object, got %s", name, describe(value))
	}
	if _, isArray := object.Export().([]any); isArray {
		return nil, fmt.Errorf("%s must be an object, got an array", name)
	}
	for _, key := range object.Keys() {
		if !contains(known, key) {
			return nil, fmt.Errorf("%s: unknown option %q (known: %s)", name, key, strings.Join(known, ", "))
		}
	}
	_ = rt
	return object, nil
}

func contains(list []string, item string) bool {
	for _, candidate := range list {
		if candidate == item {
			return true
		}
	}
	return false
}

func exportString(value sobek.Value) (string, bool) {
	if common.IsNullish(value) {
		return "", false
	}
	text, ok := value.Export().(string)
	return text, ok
}

// describe names a JS value for an error message: its type and, for short values, the value.
func describe(value sobek.Value) string {
	if value == nil || sobek.IsUndefined(value) {
		return "undefined"
	}
	if sobek.IsNull(value) {
		return "null"
	}
	switch v := value.Export().(type) {
	case string:
		if len(v) > 40 {
			v = v[:40] + "…"
		}
		return fmt.Sprintf("the string %q", v)
	case int64, float64:
		return fmt.Sprintf("the number %v", v)
	case bool:
		return fmt.Sprintf("the boolean %v", v)
	case []any:
		return "an array"
	}
	return "an " + value.ExportType().String() + " value"
}

// validIdempotencyKey is the gateway's rule: 1 to 255 bytes, printable ASCII, no spaces.
func validIdempotencyKey(key string) bool {
	if key == "" || len(key) > 255 {
		return false
	}
	for i := 0; i < len(key); i++ {
		if key[i] < 0x21 || key[i] > 0x7e {
			return false
		}
	}
	return true
}
