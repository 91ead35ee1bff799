package agent

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/telemed/telemed/internal/agent/agenttest"
	"github.com/telemed/telemed/internal/agent/deviceapi"
)

// queueBatch leaves one batch of readings not uploaded yet in dir's queue.
func queueBatch(t *testing.T, dir string) {
	t.Helper()
	q := filepath.Join(dir, QueueDir)
	if err := os.MkdirAll(q, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(q, "000000000001_b_1.json"), []byte(`{"batch_id":"b_1","readings":[]}`), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestEnrollFolder: what EnrollFolder decides for a folder in each state, and what its refusals
// say word for word (telemed device prints them as they are).
func TestEnrollFolder(t *testing.T) {
	ctx := context.Background()
	srv := agenttest.NewEnrollServer(t, "K7QF-M2XD", "AAAA-BBBB", "CCCC-DDDD")
	other := agenttest.NewEnrollServer(t, "K7QF-M2XD")
	dir := filepath.Join(t.TempDir(), "device")
	creds := filepath.Join(dir, deviceapi.CredentialsFile)
	queue := filepath.Join(dir, QueueDir)
	enroll := func(linkOrCode, server string) (EnrollResult, error) {
		return EnrollFolder(ctx, EnrollOptions{Dir: dir, LinkOrCode: linkOrCode, Server: server, Name: "Oximeter"})
	}

	res, err := enroll(srv.Link("K7QF-M2XD"), "")
	if err != nil || res.Outcome != Enrolled || res.Credentials.DeviceID != "d_1K7QF" || res.Credentials.Name != "Oximeter" || res.Credentials.Server != srv.URL {
		t.Fatalf("a fresh folder: %+v %v", res, err)
	}
	if saved, err := deviceapi.LoadCredentials(dir); err != nil || saved.Token != "td_K7QF-M2XD" {
		t.Fatalf("credentials saved: %+v %v", saved, err)
	}
	first, _ := os.ReadFile(creds)

	t.Run("same enrollment", func(t *testing.T) {
		// As a link, or as the code and the server: nothing is redeemed, the folder's device is kept.
		for _, c := range [][2]string{{srv.Link("K7QF-M2XD"), ""}, {"K7QF-M2XD", srv.URL}} {
			res, err := enroll(c[0], c[1])
			if err != nil || res.Outcome != AlreadyWithThisCode || res.Credentials.DeviceID != "d_1K7QF" {
				t.Errorf("%s again: %+v %v", c[0], res, err)
			}
		}
		if n := srv.Attempts(); n != 1 {
			t.Errorf("the code was redeemed %d times, want once", n)
		}
	})

	t.Run("another device", func(t *testing.T) {
		head := dir + ` is enrolled already, as device d_1K7QF ("Oximeter") of patient p-1, with `
		tail := "; it is not switched to another device. To enroll another device, give it another --dir. " +
			"To make this folder another device (this one was revoked, say), remove " + creds + " first"
		again := ". To go on as this device, run without --enroll (and without TELEMED_ENROLL)."
		for _, c := range []struct{ name, link, want string }{
			{"another code", srv.Link("AAAA-BBBB"), head + "another enrollment code" + tail + again},
			{"another server", other.Link("K7QF-M2XD"), head + "another server, " + srv.URL + ", not " + other.URL + tail + again},
		} {
			if _, err := enroll(c.link, ""); err == nil || err.Error() != c.want {
				t.Errorf("%s: %v\nwant %s", c.name, err, c.want)
			}
		}
		queueBatch(t, dir)
		defer os.RemoveAll(queue)
		want := head + "another enrollment code" + tail + ", and move " + queue + " aside (it holds 1 batch of this device's readings not uploaded yet)" + again
		if _, err := enroll(srv.Link("AAAA-BBBB"), ""); err == nil || err.Error() != want {
			t.Errorf("with a queue: %v\nwant %s", err, want)
		}
		if now, _ := os.ReadFile(creds); string(now) != string(first) || srv.Attempts() != 1 || other.Attempts() != 0 {
			t.Errorf("the credentials changed, or a code was redeemed:\n%s", now)
		}
	})

	t.Run("code unknown to the credentials", func(t *testing.T) {
		// Credentials saved before they kept their code's digest: the code given may well be the one
		// they came from, so it is not redeemed.
		c, _ := deviceapi.LoadCredentials(dir)
		c.CodeSHA256 = ""
		if err := deviceapi.SaveCredentials(dir, c); err != nil {
			t.Fatal(err)
		}
		defer os.WriteFile(creds, first, 0o600)
		before := srv.Attempts()
		res, err := enroll(srv.Link("CCCC-DDDD"), "")
		if err != nil || res.Outcome != AlreadyCodeUnknown || res.Credentials.DeviceID != "d_1K7QF" || srv.Attempts() != before {
			t.Errorf("%+v %v, %d attempts (was %d)", res, err, srv.Attempts(), before)
		}
	})

	t.Run("an earlier device's queue", func(t *testing.T) {
		// Its credentials removed (after a revocation, say), the folder's queue still holds readings
		// of the device before: they must not be sent as the new one's.
		if err := os.Remove(creds); err != nil {
			t.Fatal(err)
		}
		queueBatch(t, dir)
		want := dir + " holds 1 batch of readings of a device enrolled there before, not uploaded yet; enrolling would send them as the new device's. " +
			"Move " + queue + " aside to keep them (mv " + queue + " " + queue + ".old), or remove it to discard them, or enroll into another --dir"
		before := srv.Attempts()
		if _, err := enroll(srv.Link("AAAA-BBBB"), ""); err == nil || err.Error() != want || srv.Attempts() != before {
			t.Errorf("%v\nwant %s", err, want)
		}
		if _, err := os.Stat(creds); !os.IsNotExist(err) {
			t.Errorf("credentials were saved over the queue: %v", err)
		}
		// Moved aside, the folder enrolls as the new device.
		if err := os.Rename(queue, queue+".old"); err != nil {
			t.Fatal(err)
		}
		if res, err := enroll(srv.Link("AAAA-BBBB"), ""); err != nil || res.Outcome != Enrolled || res.Credentials.DeviceID != "d_2AAAA" {
			t.Errorf("after moving the queue aside: %+v %v", res, err)
		}
	})

	t.Run("a bad link", func(t *testing.T) {
		// Refused before the folder or the server is looked at.
		if _, err := EnrollFolder(ctx, EnrollOptions{Dir: filepath.Join(t.TempDir(), "x"), LinkOrCode: "K7QF-M2XD"}); err == nil ||
			!strings.Contains(err.Error(), "needs the server's address") {
			t.Errorf("a code without a server: %v", err)
		}
	})
}

func TestDefaultName(t *testing.T) {
	for _, c := range []struct {
		sims      []string
		fromStdin bool
		host      string
		want      string
	}{
		{[]string{"pulse-oximeter", "ecg"}, true, "ward-3", "Simulated pulse-oximeter, ecg"},
		{[]string{"thermometer"}, false, "", "Simulated thermometer"},
		{nil, true, "ward-3", "Device bridge on ward-3"},
		{nil, false, "ward-3", "telemed device on ward-3"},
		{nil, true, "", "telemed device"},
		{nil, false, "", "telemed device"},
	} {
		if got := DefaultName(c.sims, c.fromStdin, c.host); got != c.want {
			t.Errorf("DefaultName(%q, %v, %q) = %q, want %q", c.sims, c.fromStdin, c.host, got, c.want)
		}
	}
}
