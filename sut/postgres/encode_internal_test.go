package postgres

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgtype"
)

// TestUUIDArraysAreSentAsText: the store passes transaction ids as Go
// strings. pgx has no binary plan for []string into uuid[]: every such
// argument first failed to encode (an error formatted with the whole
// slice: fmt.Errorf alone took 5 % of the worker's CPU at 2,500 TPS,
// docs/performance.md "Ninth pass"), then went as an array literal in text.
// So a uuid[] parameter is declared text[] and cast in SQL
// ($1::text[]::uuid[]), which pgx sends in binary at the first try.
func TestUUIDArraysAreSentAsText(t *testing.T) {
	types := pgtype.NewMap()
	ids := []string{"3f1c6a4e-8a0b-4c53-9a0e-2f6b3d8e9a11", "0e8d1f9c-2b7a-4d3e-8f61-5a9c0b7e4d22"}
	if _, err := types.Encode(pgtype.TextArrayOID, pgtype.BinaryFormatCode, ids, nil); err != nil {
		t.Fatalf("[]string as binary text[]: %v", err)
	}
	if _, err := types.Encode(pgtype.TextArrayOID, pgtype.BinaryFormatCode, []*string{&ids[0], nil}, nil); err != nil {
		t.Fatalf("[]*string (dead letters' ids, some NULL) as binary text[]: %v", err)
	}

	sources, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	uuidArrayParameter := regexp.MustCompile(`\$[0-9]+::uuid\[\]`)
	checked := 0
	for _, source := range sources {
		if strings.HasSuffix(source, "_test.go") {
			continue
		}
		text, err := os.ReadFile(source)
		if err != nil {
			t.Fatal(err)
		}
		checked++
		for _, found := range uuidArrayParameter.FindAllString(string(text), -1) {
			t.Errorf("%s: %s takes Go strings into uuid[]; declare it text[] and cast: %s", source, found,
				strings.Replace(found, "::uuid[]", "::text[]::uuid[]", 1))
		}
	}
	if checked == 0 {
		t.Fatal("no source file of the package read")
	}
}
