package storetest

import (
	"context"
	"errors"
	"testing"

	"github.com/telemed/telemed/internal/store"
)

// testSettings checks that EnsureSetting keeps the first value stored, and that a setting can be
// replaced and deleted.
func testSettings(t *testing.T, s store.Settings) {
	ctx := context.Background()
	if _, err := s.Setting(ctx, "k"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("missing setting: %v", err)
	}
	v, err := s.EnsureSetting(ctx, "k", "first")
	must(t, err)
	v2, err := s.EnsureSetting(ctx, "k", "second")
	must(t, err)
	if v != "first" || v2 != "first" {
		t.Fatalf("EnsureSetting = %q, %q; want the first value kept", v, v2)
	}
	must(t, s.PutSetting(ctx, "k", "third"))
	if v, _ := s.Setting(ctx, "k"); v != "third" {
		t.Fatalf("after PutSetting: %q", v)
	}
	must(t, s.DeleteSetting(ctx, "k"))
	if _, err := s.Setting(ctx, "k"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("deleted setting: %v", err)
	}
}
