package agent

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/telemed/telemed/internal/agent/deviceapi"
)

// EnrollOptions say what to enroll: an agent folder, with an enrollment link or code.
type EnrollOptions struct {
	// Dir is the agent's folder.
	Dir string
	// LinkOrCode is the enrollment link the provider gave, or its code alone (then Server is needed).
	LinkOrCode string
	// Server is the server's URL, for a code given alone.
	Server string
	// Name is the device's name as the provider will see it.
	Name string
}

// Outcome is what EnrollFolder did.
type Outcome int

// Outcomes of EnrollFolder.
const (
	// Enrolled: the code was redeemed and the credentials saved.
	Enrolled Outcome = iota
	// AlreadyWithThisCode: the folder was enrolled with this very enrollment (--enroll given again,
	// or TELEMED_ENROLL left in a service's environment); nothing was redeemed.
	AlreadyWithThisCode
	// AlreadyCodeUnknown: the folder was enrolled on this server before its credentials kept their
	// code's digest, so it cannot tell; the code given is not redeemed.
	AlreadyCodeUnknown
)

// EnrollResult is what EnrollFolder did, and the folder's credentials after it.
type EnrollResult struct {
	Outcome     Outcome
	Credentials deviceapi.Credentials
}

// EnrollFolder enrolls an agent folder as a device and saves its credentials there. A folder
// enrolled already with the same enrollment is left as it is: the code was redeemed, and redeeming it
// again would fail. A folder enrolled as another device is not switched to a new one (that is
// refused, saying what to do), and a queue of readings not uploaded yet is never left to be sent as
// the new device's.
func EnrollFolder(ctx context.Context, o EnrollOptions) (EnrollResult, error) {
	server, code, err := deviceapi.ParseEnrollment(o.LinkOrCode, o.Server)
	if err != nil {
		return EnrollResult{}, err
	}
	waiting, err := Waiting(o.Dir)
	if err != nil {
		return EnrollResult{}, err
	}
	old, err := deviceapi.LoadCredentials(o.Dir)
	if err == nil {
		same, known := old.EnrolledWith(server, code)
		switch {
		case same:
			return EnrollResult{Outcome: AlreadyWithThisCode, Credentials: old}, nil
		case !known:
			return EnrollResult{Outcome: AlreadyCodeUnknown, Credentials: old}, nil
		}
		return EnrollResult{}, enrolledAsAnother(o.Dir, old, server, waiting)
	}
	if waiting > 0 {
		// Readings of a device enrolled here before (its credentials since removed, or damaged): sent
		// after enrolling, they would be the new device's, and the old one may be revoked.
		queue := filepath.Join(o.Dir, QueueDir)
		return EnrollResult{}, fmt.Errorf("%s holds %s of readings of a device enrolled there before, not uploaded yet; enrolling would send them as the new device's. "+
			"Move %s aside to keep them (mv %s %s.old), or remove it to discard them, or enroll into another --dir",
			o.Dir, Batches(waiting), queue, queue, queue)
	}
	c, err := deviceapi.Enroll(ctx, server, code, o.Name, nil)
	if err != nil {
		return EnrollResult{}, err
	}
	if err := deviceapi.SaveCredentials(o.Dir, c); err != nil {
		return EnrollResult{}, err
	}
	return EnrollResult{Outcome: Enrolled, Credentials: c}, nil
}

// enrolledAsAnother is the refusal to enroll a folder that is another device already.
func enrolledAsAnother(dir string, old deviceapi.Credentials, server string, waiting int) error {
	what := "another enrollment code"
	if old.Server != server {
		what = "another server, " + old.Server + ", not " + server
	}
	msg := fmt.Sprintf("%s is enrolled already, as device %s (%q) of patient %s, with %s; it is not switched to another device. "+
		"To enroll another device, give it another --dir. To make this folder another device (this one was revoked, say), remove %s first",
		dir, old.DeviceID, old.Name, old.PatientID, what, filepath.Join(dir, deviceapi.CredentialsFile))
	if waiting > 0 {
		msg += fmt.Sprintf(", and move %s aside (it holds %s of this device's readings not uploaded yet)", filepath.Join(dir, QueueDir), Batches(waiting))
	}
	return errors.New(msg + ". To go on as this device, run without --enroll (and without TELEMED_ENROLL).")
}

// DefaultName is the name a device enrolls with when none is given: what it measures, so that a
// provider who sees several devices of a patient can tell them apart. sims are the simulated devices
// it runs, fromStdin says it bridges readings from standard input, host is this machine's name ("" when
// it is not known).
func DefaultName(sims []string, fromStdin bool, host string) string {
	switch {
	case len(sims) > 0:
		return "Simulated " + strings.Join(sims, ", ")
	case fromStdin && host != "":
		return "Device bridge on " + host
	case host != "":
		return "telemed device on " + host
	}
	return "telemed device"
}

// Batches says how many batches there are, in words, as the agent's messages do.
func Batches(n int) string {
	if n == 1 {
		return "1 batch"
	}
	return fmt.Sprintf("%d batches", n)
}
