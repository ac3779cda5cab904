package postgres

import (
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"
)

// CheckURL says whether url is a connection string Open accepts, without
// connecting, so a process can refuse a bad one before it starts anything.
func CheckURL(url string) error {
	if url == "" {
		return fmt.Errorf("postgres: empty URL")
	}
	if _, err := pgxpool.ParseConfig(url); err != nil {
		return fmt.Errorf("postgres: parse URL: %w", err)
	}
	return nil
}
