package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/telemed/telemed/internal/agent"
	"github.com/telemed/telemed/internal/agent/source"
	"github.com/telemed/telemed/internal/config"
)

// simList is the repeatable --sim flag.
type simList []string

func (s *simList) String() string { return strings.Join(*s, ",") }

func (s *simList) Set(v string) error {
	for _, name := range strings.Split(v, ",") { // TELEMED_SIM=pulse-oximeter,ecg sets several
		name = strings.TrimSpace(name)
		if !slices.Contains(source.SimNames(), name) {
			return fmt.Errorf("no simulated device %q: choose from %s", name, strings.Join(source.SimNames(), ", "))
		}
		if slices.Contains(*s, name) {
			return fmt.Errorf("%s is given twice", name)
		}
		*s = append(*s, name)
	}
	return nil
}

// device runs the device agent: telemed device [--enroll LINK|CODE] [--sim NAME]... [--stdin].
func device(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("telemed device", flag.ContinueOnError)
	fs.SetOutput(stderr)
	enroll := fs.String("enroll", "", "enroll this device with the `LINK` (or the code) the provider gave; needed once")
	server := fs.String("server", "", "the server's `URL`, for a bare --enroll code (default: the one the device enrolled with)")
	dir := fs.String("dir", agent.DefaultDir, "`folder` of the device's credentials and queue")
	name := fs.String("name", "", "the device's `name` as the provider sees it, given at enrollment (default: from its sources)")
	var sims simList
	fs.Var(&sims, "sim", "simulate a `device`: "+strings.Join(source.SimNames(), ", ")+" (repeat for several)")
	fromStdin := fs.Bool("stdin", false, "read readings as JSON lines from standard input (docs/monitoring.md)")
	bpInterval := fs.Duration("bp-interval", source.DefaultSimInterval(source.SimBPCuff), "how often the simulated bp-cuff measures")
	tempInterval := fs.Duration("temp-interval", source.DefaultSimInterval(source.SimThermometer), "how often the simulated thermometer measures")
	seed := fs.Uint64("seed", 0, "seed of the simulated patient and noise (default: from the device's id, the same each run)")
	noLive := fs.Bool("no-live", false, "only upload; do not join consultations of the patient")
	verbose := fs.Bool("verbose", false, "log every upload and connection step")
	if err := config.Parse(fs, args, nil); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("device: unexpected %q; the agent takes flags only (telemed device -h lists them; to create a code on the server: telemed device enroll --patient ID)", fs.Arg(0))
	}
	if *bpInterval <= 0 || *tempInterval <= 0 {
		return errors.New("device: --bp-interval and --temp-interval must be positive durations, like 5m or 30s")
	}
	if *server != "" && *enroll == "" {
		if _, err := agent.NormalizeServerURL(*server); err != nil {
			return fmt.Errorf("device: --server: %w", err)
		}
	}
	if *enroll != "" {
		if err := enrollDevice(ctx, *enroll, *server, *dir, deviceName(*name, sims, *fromStdin), stdout); err != nil {
			return fmt.Errorf("device: %w", err)
		}
		*server = "" // the enrollment's
	} else if *name != "" {
		fmt.Fprintln(stderr, "telemed device: --name is given at enrollment (--enroll); the device keeps the name it enrolled with")
	}

	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level, ReplaceAttr: shortTime}))
	creds, err := agent.LoadCredentials(*dir)
	if err != nil {
		return fmt.Errorf("device: %w", err)
	}
	seedSet := false
	fs.Visit(func(f *flag.Flag) { seedSet = seedSet || f.Name == "seed" })
	if !seedSet {
		h := fnv.New64a()
		h.Write([]byte(creds.DeviceID))
		*seed = h.Sum64()
	}
	patient := source.NewPatient(*seed)
	var sources []agent.Source
	for _, s := range sims {
		o := source.SimOptions{Seed: *seed, Patient: patient}
		switch s {
		case source.SimBPCuff:
			o.Interval = *bpInterval
		case source.SimThermometer:
			o.Interval = *tempInterval
		}
		sim, err := source.NewSim(s, o)
		if err != nil {
			return fmt.Errorf("device: %w", err)
		}
		sources = append(sources, sim)
	}
	if *fromStdin {
		sources = append(sources, &source.LineSource{R: stdin, OnBadLine: func(n int, err error) {
			fmt.Fprintf(stderr, "telemed device: stdin line %d skipped: %v\n", n, err)
		}})
	}
	a, err := agent.New(agent.Options{Dir: *dir, ServerURL: *server, Sources: sources, Logger: log, NoLive: *noLive})
	if err != nil {
		return fmt.Errorf("device: %w", err)
	}
	defer a.Close()

	st := a.Status()
	names := make([]string, 0, len(sources))
	for _, s := range sources {
		names = append(names, s.Name())
	}
	fmt.Fprintf(stdout, "Device %s (%q) of patient %s, sending to %s.\n", creds.DeviceID, creds.Name, creds.PatientID, serverOf(creds, *server))
	switch {
	case len(sources) == 0:
		fmt.Fprintf(stdout, "No --sim or --stdin: sending what the queue holds (%s), then stopping.\n", batches(st.Queued))
	default:
		fmt.Fprintf(stdout, "Measuring with %s; queue in %s (%s waiting). Ctrl-C stops.\n",
			strings.Join(names, ", "), filepath.Join(*dir, "queue"), batches(st.Queued))
	}

	var wg sync.WaitGroup
	pctx, stopProgress := context.WithCancel(ctx)
	wg.Go(func() { progress(pctx, a, stdout) })
	err = a.Run(ctx)
	stopProgress()
	wg.Wait()
	st = a.Status()
	if errors.Is(err, agent.ErrRevoked) {
		fmt.Fprintf(stdout, "Stopped: %d readings taken, %d stored by the server; the server refuses this device, so the %s in its queue cannot be sent.\n",
			st.Taken, st.Accepted, batches(st.Queued))
		return fmt.Errorf("device: %w. With a new code: enroll into another --dir, or remove %s and move %s aside (or remove it) first",
			err, filepath.Join(*dir, agent.CredentialsFile), filepath.Join(*dir, "queue"))
	}
	fmt.Fprintf(stdout, "Stopped: %d readings taken, %d stored by the server; %s in the queue for the next run.\n",
		st.Taken, st.Accepted, batches(st.Queued))
	if st.Dropped > 0 {
		fmt.Fprintf(stdout, "%s refused by the server (or damaged) are kept in %s.\n", batches(int(st.Dropped)), filepath.Join(*dir, agent.RejectedDir))
	}
	if err != nil {
		return fmt.Errorf("device: %w", err)
	}
	return nil
}

// progress prints what the agent has done when it changes: after 5 s, then at most every 30 s.
func progress(ctx context.Context, a *agent.Agent, stdout io.Writer) {
	var last agent.Status
	wait := 5 * time.Second
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = 30 * time.Second
		st := a.Status()
		st.Online = last.Online // not worth a line of its own
		if st == last {
			continue
		}
		last = st
		line := fmt.Sprintf("%s  %d readings taken; %d stored in %s", time.Now().Format("15:04:05"), st.Taken, st.Accepted, batches(int(st.Uploaded)))
		if st.Rejected > 0 || st.Dropped > 0 {
			line += fmt.Sprintf(" (%d readings refused, %s refused whole)", st.Rejected, batches(int(st.Dropped)))
		}
		line += fmt.Sprintf("; %s waiting", batches(st.Queued))
		if st.Live != "" {
			line += fmt.Sprintf("; live in consultation %s (%d readings streamed)", st.Live, st.Streamed)
		}
		fmt.Fprintln(stdout, line)
	}
}

// enrollDevice redeems an enrollment and saves the credentials. A folder enrolled already with the
// same enrollment (--enroll given again, or TELEMED_ENROLL left in a service's environment) is left
// as it is: the code was redeemed, and redeeming it again would fail. A folder enrolled as another
// device is not switched to a new one, and a queue of readings not uploaded yet is not left to be
// sent as the new device's.
func enrollDevice(ctx context.Context, linkOrCode, serverURL, dir, name string, stdout io.Writer) error {
	server, code, err := agent.ParseEnrollment(linkOrCode, serverURL)
	if err != nil {
		return err
	}
	creds := filepath.Join(dir, agent.CredentialsFile)
	queue := filepath.Join(dir, "queue")
	n, err := agent.Waiting(dir)
	if err != nil {
		return err
	}
	old, err := agent.LoadCredentials(dir)
	if err == nil {
		same, known := old.EnrolledWith(server, code)
		switch {
		case same:
			fmt.Fprintf(stdout, "Already enrolled as %s (%q) for patient %s at %s, with this code: --enroll is not needed any more (credentials in %s).\n",
				old.DeviceID, old.Name, old.PatientID, old.Server, creds)
			return nil
		case !known:
			fmt.Fprintf(stdout, "Already enrolled as %s (%q) for patient %s at %s (credentials in %s): --enroll is not needed any more, and is not used. "+
				"To enroll this folder as another device, remove %s first.\n", old.DeviceID, old.Name, old.PatientID, old.Server, creds, creds)
			return nil
		}
		what := "another enrollment code"
		if old.Server != server {
			what = "another server, " + old.Server + ", not " + server
		}
		msg := fmt.Sprintf("%s is enrolled already, as device %s (%q) of patient %s, with %s; it is not switched to another device. "+
			"To enroll another device, give it another --dir. To make this folder another device (this one was revoked, say), remove %s first",
			dir, old.DeviceID, old.Name, old.PatientID, what, creds)
		if n > 0 {
			msg += fmt.Sprintf(", and move %s aside (it holds %s of this device's readings not uploaded yet)", queue, batches(n))
		}
		return errors.New(msg + ". To go on as this device, run without --enroll (and without TELEMED_ENROLL).")
	}
	if n > 0 {
		// Readings of a device enrolled here before (its credentials since removed, or damaged): sent
		// after enrolling, they would be the new device's, and the old one may be revoked.
		return fmt.Errorf("%s holds %s of readings of a device enrolled there before, not uploaded yet; enrolling would send them as the new device's. "+
			"Move %s aside to keep them (mv %s %s.old), or remove it to discard them, or enroll into another --dir",
			dir, batches(n), queue, queue, queue)
	}
	c, err := agent.Enroll(ctx, server, code, name, nil)
	if err != nil {
		return err
	}
	if err := agent.SaveCredentials(dir, c); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "Enrolled as %s (%q) for patient %s at %s; credentials saved in %s.\n",
		c.DeviceID, c.Name, c.PatientID, c.Server, creds)
	return nil
}

// deviceName is the name a device enrolls with when --name is not given: what it measures.
func deviceName(name string, sims []string, fromStdin bool) string {
	if name != "" {
		return name
	}
	host, _ := os.Hostname()
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

func batches(n int) string {
	if n == 1 {
		return "1 batch"
	}
	return fmt.Sprintf("%d batches", n)
}

func serverOf(c agent.Credentials, override string) string {
	if override != "" {
		return override
	}
	return c.Server
}

// shortTime logs the time of day only: the agent's lines are read by a person at a terminal.
func shortTime(groups []string, a slog.Attr) slog.Attr {
	if a.Key == slog.TimeKey && len(groups) == 0 {
		return slog.String(slog.TimeKey, a.Value.Time().Format("15:04:05"))
	}
	return a
}

// deviceEnroll creates an enrollment code for a patient, on the server's machine.
func deviceEnroll(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, data := newFlags("telemed device enroll", stderr)
	patientID := fs.String("patient", "", "`id` of the patient the device will measure (required; telemed patient add prints it)")
	baseURL := fs.String("base-url", "", "public `URL` for the link (default: the one the server last ran with)")
	asJSON := fs.Bool("json", false, "print the enrollment as JSON, as the API returns it (code, link, expires_at)")
	if err := config.Parse(fs, args, nil); err != nil {
		return err
	}
	if *patientID == "" {
		return errors.New("device enroll: --patient is required (the patient's id, which telemed patient add printed)")
	}
	svc, closeStore, err := openServices(ctx, *data, *baseURL)
	if err != nil {
		return err
	}
	defer closeStore()
	p, err := svc.Monitoring.PatientProvider(ctx, *patientID)
	if err != nil {
		return fmt.Errorf("device enroll: %w", err)
	}
	e, err := svc.Monitoring.CreateEnrollment(ctx, p, p.ID+" (cli)", *patientID)
	if err != nil {
		return fmt.Errorf("device enroll: %w", err)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(e)
	}
	fmt.Fprintf(stdout, "Enrollment code %s for patient %s (works once, until %s)\n\n  Link: %s\n\nOn the device:\n\n  telemed device --enroll '%s' --sim pulse-oximeter\n",
		e.Code, *patientID, e.ExpiresAt.Local().Format("2006-01-02 15:04 MST"), e.Link, e.Link)
	return nil
}

// patientAdd creates a patient of a provider and prints the patient's id, for scripts.
func patientAdd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, data := newFlags("telemed patient add", stderr)
	email := fs.String("provider", "", "`email` of the provider whose patient it is (required)")
	name := fs.String("name", "", "the patient's name (required)")
	birth := fs.String("birth-date", "", "the patient's birth date, `YYYY-MM-DD`")
	if err := config.Parse(fs, args, nil); err != nil {
		return err
	}
	if *email == "" || *name == "" {
		return errors.New("patient add: --provider and --name are required")
	}
	svc, closeStore, err := openServices(ctx, *data, "")
	if err != nil {
		return err
	}
	defer closeStore()
	p, err := svc.Accounts.ProviderByEmail(ctx, *email)
	if err != nil {
		return fmt.Errorf("patient add: %w", err)
	}
	pt, err := svc.Monitoring.AddPatient(ctx, p, p.ID+" (cli)", *name, *birth)
	if err != nil {
		return fmt.Errorf("patient add: %w", err)
	}
	fmt.Fprintf(stderr, "Patient %s added for %s. Enroll a device: telemed device enroll --patient %s\n", pt.Name, p.Email, pt.ID)
	fmt.Fprintln(stdout, pt.ID)
	return nil
}
