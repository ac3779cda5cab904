package shard

import "testing"

func TestOfRoutesEveryCreatedIdBackToItsShard(t *testing.T) {
	for _, shards := range []int{1, 2, 3, 5} {
		layout, err := New(shards)
		if err != nil {
			t.Fatal(err)
		}
		seen := map[int64]int{}
		for shard := 0; shard < shards; shard++ {
			first, step, err := layout.Sequence(shard)
			if err != nil {
				t.Fatal(err)
			}
			if first <= 0 {
				t.Fatalf("%d shards: shard %d starts at %d, which is the external account or no account", shards, shard, first)
			}
			for id := first; id < first+20*step; id += step {
				if got := layout.Of(id); got != shard {
					t.Errorf("%d shards: id %d created by shard %d routes to shard %d", shards, id, shard, got)
				}
				if other, twice := seen[id]; twice {
					t.Errorf("%d shards: id %d created by shards %d and %d", shards, id, other, shard)
				}
				seen[id] = shard
			}
		}
	}
}

func TestOneShardIsTodaysNumbering(t *testing.T) {
	layout, _ := New(1)
	first, step, err := layout.Sequence(0)
	if err != nil || first != 1 || step != 1 {
		t.Fatalf("one shard: first %d step %d err %v, want 1, 1", first, step, err)
	}
	if layout.CrossShard(1, 2) {
		t.Error("one shard: a transfer crosses shards")
	}
}

func TestCrossShard(t *testing.T) {
	layout, _ := New(2)
	cases := []struct {
		name                string
		source, destination int64
		want                bool
	}{
		{"same even", 2, 4, false},
		{"same odd", 3, 5, false},
		{"odd to even", 3, 4, true},
		{"even to odd", 2, 7, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := layout.CrossShard(c.source, c.destination); got != c.want {
				t.Errorf("CrossShard(%d, %d) = %v, want %v", c.source, c.destination, got, c.want)
			}
		})
	}
}

func TestBadLayoutsAndShardsAreRefused(t *testing.T) {
	for _, n := range []int{0, -1, MaxShards + 1} {
		if _, err := New(n); err == nil {
			t.Errorf("New(%d) accepted", n)
		}
	}
	layout, _ := New(2)
	for _, s := range []int{-1, 2} {
		if _, _, err := layout.Sequence(s); err == nil {
			t.Errorf("Sequence(%d) of 2 shards accepted", s)
		}
	}
}

func TestComponent(t *testing.T) {
	if Component(0) != "postgres" || Component(1) != "postgres-shard-1" {
		t.Errorf("components %q %q", Component(0), Component(1))
	}
}

func TestParseMember(t *testing.T) {
	layout, index, err := ParseMember("1/2")
	if err != nil || layout.Shards != 2 || index != 1 {
		t.Fatalf("1/2: %+v %d %v", layout, index, err)
	}
	for _, bad := range []string{"", "1", "2/2", "-1/2", "0/0", "a/b", "1/2x", "1/17", "1/2/3"} {
		if _, _, err := ParseMember(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestGroup(t *testing.T) {
	if got := Group("ledger-workers", 1); got != "ledger-workers-shard-1" {
		t.Errorf("Group(ledger-workers, 1) = %q", got)
	}
}
