package config

import (
	"flag"
	"io"
	"strings"
	"testing"
)

func parse(t *testing.T, args []string, env map[string]string) (Serve, error) {
	t.Helper()
	c := DefaultServe()
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c.Flags(fs)
	err := Parse(fs, args, func(k string) string { return env[k] })
	if err == nil {
		err = c.Validate()
	}
	return c, err
}

func TestServeConfig(t *testing.T) {
	c, err := parse(t, nil, nil)
	if err != nil || c.HTTPAddr != "127.0.0.1:8080" || c.DataDir != "./telemed-data" {
		t.Fatalf("defaults = %+v, %v", c, err)
	}
	c, err = parse(t, []string{"--http", "0.0.0.0:9000"}, map[string]string{
		"TELEMED_HTTP": "127.0.0.1:1", "TELEMED_BASE_URL": "https://tele.example.org/", "TELEMED_DATA": "/var/lib/telemed"})
	if err != nil {
		t.Fatal(err)
	}
	if c.HTTPAddr != "0.0.0.0:9000" {
		t.Errorf("flag should win over environment: %s", c.HTTPAddr)
	}
	if c.BaseURL != "https://tele.example.org" || c.DataDir != "/var/lib/telemed" {
		t.Errorf("environment not applied: %+v", c)
	}

	bad := []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"--http", "8080"}, nil, "--http"},
		{[]string{"--base-url", "tele.example.org"}, nil, "--base-url"},
		{[]string{"--base-url", "https://x.org/telemed"}, nil, "no path"},
		{[]string{"--tls-cert", "c.pem"}, nil, "go together"},
		{[]string{"--log-level", "loud"}, nil, "--log-level"},
		{nil, map[string]string{"TELEMED_HTTP": "nope"}, "--http"},
	}
	for _, b := range bad {
		if _, err := parse(t, b.args, b.env); err == nil || !strings.Contains(err.Error(), b.want) {
			t.Errorf("%v %v: err = %v, want one mentioning %q", b.args, b.env, err, b.want)
		}
	}
	if EnvName("base-url") != "TELEMED_BASE_URL" {
		t.Error(EnvName("base-url"))
	}
}
