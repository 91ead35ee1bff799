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

func TestTURNConfig(t *testing.T) {
	c, err := parse(t, nil, nil)
	if err != nil || !c.TURN || c.TURNAddr != "0.0.0.0:3478" || c.TURNRelayPorts != "49152-65535" || c.ICETransportPolicy != "all" {
		t.Fatalf("TURN defaults = %+v, %v", c, err)
	}
	c, err = parse(t, []string{"--turn-allow-peer", "10.20.0.0/16", "--turn-allow-peer", "192.168.5.7",
		"--turn-relay-ports", "40000-40100", "--turn-public-ip", "203.0.113.10", "--ice-transport-policy", "relay"},
		map[string]string{"TELEMED_TURN_SERVER": "turn:a.example.org:3478,turns:b.example.org:443?transport=tcp",
			"TELEMED_TURN": "false"})
	if err != nil {
		t.Fatal(err)
	}
	allow, _ := c.AllowPeerPrefixes()
	lo, hi, _ := c.RelayPorts()
	if c.TURN || len(allow) != 2 || allow[1].String() != "192.168.5.7/32" || lo != 40000 || hi != 40100 || len(c.TURNServers) != 2 {
		t.Fatalf("parsed %+v (allow %v)", c, allow)
	}
	bad := []struct {
		args []string
		want string
	}{
		{[]string{"--turn-addr", "3478"}, "--turn-addr"},
		{[]string{"--turn-relay-ports", "60000-50000"}, "--turn-relay-ports"},
		{[]string{"--turn-relay-ports", "0-10"}, "--turn-relay-ports"},
		{[]string{"--turn-public-ip", "turn.example.org"}, "--turn-public-ip"},
		{[]string{"--turn-public-ip", "0.0.0.0"}, "--turn-public-ip"},
		{[]string{"--turn-public-ip", "2001:db8::1"}, "same family"},
		{[]string{"--turn-allow-peer", "10.0.0.0/33"}, "--turn-allow-peer"},
		{[]string{"--turn-secret", "short"}, "--turn-secret"},
		{[]string{"--turn-user-quota", "0"}, "--turn-user-quota"},
		{[]string{"--turn-credential-ttl", "10s"}, "--turn-credential-ttl"},
		{[]string{"--turn-server", "http://x"}, "--turn-server"},
		{[]string{"--turn-tls-cert", "c.pem"}, "go together"},
		{[]string{"--ice-transport-policy", "none"}, "--ice-transport-policy"},
		{[]string{"--turn=false", "--ice-transport-policy", "relay"}, "needs a TURN server"},
	}
	for _, b := range bad {
		if _, err := parse(t, b.args, nil); err == nil || !strings.Contains(err.Error(), b.want) {
			t.Errorf("%v: err = %v, want one mentioning %q", b.args, err, b.want)
		}
	}
}

func TestListFlagsTakeRepeatsAndCommas(t *testing.T) {
	c, err := parse(t, []string{"--allowed-origin", "https://a.example.org", "--allowed-origin", "https://b.example.org, https://c.example.org"},
		map[string]string{})
	if err != nil || len(c.AllowedOrigins) != 3 || c.AllowedOrigins[2] != "https://c.example.org" {
		t.Fatalf("origins %q, %v", c.AllowedOrigins, err)
	}
	c, err = parse(t, nil, map[string]string{"TELEMED_ALLOWED_ORIGIN": "https://a.example.org,https://b.example.org"})
	if err != nil || len(c.AllowedOrigins) != 2 {
		t.Fatalf("origins from the environment %q, %v", c.AllowedOrigins, err)
	}
}

func TestRedisConfig(t *testing.T) {
	c, err := parse(t, nil, map[string]string{"TELEMED_REDIS": "redis://redis.example.org:6379/2"})
	if err != nil || c.Redis != "redis://redis.example.org:6379/2" {
		t.Fatalf("TELEMED_REDIS: %q, %v", c.Redis, err)
	}
	c, err = parse(t, []string{"--redis", "rediss://telemed:pw@redis.example.org:6380/0"}, map[string]string{"TELEMED_REDIS": "redis://other:6379"})
	if err != nil || c.Redis != "rediss://telemed:pw@redis.example.org:6380/0" {
		t.Fatalf("--redis over TELEMED_REDIS: %q, %v", c.Redis, err)
	}
	if c, err := parse(t, nil, nil); err != nil || c.Redis != "" {
		t.Fatalf("default: %q, %v (one node needs no Redis)", c.Redis, err)
	}
	for _, bad := range []string{"http://redis.example.org:6379", "redis.example.org:6379", "redis://", "redis://:s3cret@[::1"} {
		_, err := parse(t, []string{"--redis", bad}, nil)
		if err == nil || !strings.Contains(err.Error(), "--redis: want redis://") {
			t.Errorf("--redis %q: %v", bad, err)
		}
		if err != nil && strings.Contains(err.Error(), "s3cret") {
			t.Errorf("--redis %q: the error shows the password: %v", bad, err)
		}
	}
}

func TestStoreURL(t *testing.T) {
	c, err := parse(t, nil, map[string]string{"TELEMED_STORE": "postgres://telemed@db.example/clinic"})
	if err != nil || c.StoreURL != "postgres://telemed@db.example/clinic" {
		t.Fatalf("TELEMED_STORE: %+v, %v", c.StoreURL, err)
	}
	for _, ok := range []string{"", "postgres://u@h/db", "postgresql://u:p@h:5433/db?sslmode=require"} {
		if err := CheckStoreURL(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"mysql://u:hunter2@h/db", "sqlite:///var/lib/telemed.db", "/var/lib/telemed"} {
		err := CheckStoreURL(bad)
		if err == nil || !strings.Contains(err.Error(), "postgres://USER") || strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%q: %v, want refused naming the accepted form, without the password", bad, err)
		}
	}
	if _, err := parse(t, []string{"--store", "redis://h"}, nil); err == nil || !strings.Contains(err.Error(), "--store") {
		t.Errorf("serve --store redis://: %v", err)
	}
}
