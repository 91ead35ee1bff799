package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/telemed/telemed/internal/agent"
	"github.com/telemed/telemed/internal/agent/deviceapi"
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

// deviceFlags are telemed device's flags.
type deviceFlags struct {
	enroll, server, dir, name  string
	sims                       simList
	fromStdin, noLive, verbose bool
	bpInterval, tempInterval   time.Duration
	seed                       uint64
	seedSet                    bool
}

// parseDeviceFlags reads and checks telemed device's flags.
func parseDeviceFlags(args []string, stderr io.Writer) (*deviceFlags, error) {
	f := &deviceFlags{}
	fs := flag.NewFlagSet("telemed device", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.enroll, "enroll", "", "enroll this device with the `LINK` (or the code) the provider gave; needed once")
	fs.StringVar(&f.server, "server", "", "the server's `URL`, for a bare --enroll code (default: the one the device enrolled with)")
	fs.StringVar(&f.dir, "dir", agent.DefaultDir, "`folder` of the device's credentials and queue")
	fs.StringVar(&f.name, "name", "", "the device's `name` as the provider sees it, given at enrollment (default: from its sources)")
	fs.Var(&f.sims, "sim", "simulate a `device`: "+strings.Join(source.SimNames(), ", ")+" (repeat for several)")
	fs.BoolVar(&f.fromStdin, "stdin", false, "read readings as JSON lines from standard input (docs/monitoring.md)")
	fs.DurationVar(&f.bpInterval, "bp-interval", source.DefaultSimInterval(source.SimBPCuff), "how often the simulated bp-cuff measures")
	fs.DurationVar(&f.tempInterval, "temp-interval", source.DefaultSimInterval(source.SimThermometer), "how often the simulated thermometer measures")
	fs.Uint64Var(&f.seed, "seed", 0, "seed of the simulated patient and noise (default: from the device's id, the same each run)")
	fs.BoolVar(&f.noLive, "no-live", false, "only upload; do not join consultations of the patient")
	fs.BoolVar(&f.verbose, "verbose", false, "log every upload and connection step")
	if err := config.Parse(fs, args, nil); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("device: unexpected %q; the agent takes flags only (telemed device -h lists them; to create a code on the server: telemed device enroll --patient ID)", fs.Arg(0))
	}
	if f.bpInterval <= 0 || f.tempInterval <= 0 {
		return nil, errors.New("device: --bp-interval and --temp-interval must be positive durations, like 5m or 30s")
	}
	if f.server != "" && f.enroll == "" {
		if _, err := deviceapi.NormalizeServerURL(f.server); err != nil {
			return nil, fmt.Errorf("device: --server: %w", err)
		}
	}
	fs.Visit(func(fl *flag.Flag) { f.seedSet = f.seedSet || fl.Name == "seed" })
	return f, nil
}

// device runs the device agent: telemed device [--enroll LINK|CODE] [--sim NAME]... [--stdin].
func device(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	f, err := parseDeviceFlags(args, stderr)
	if err != nil {
		return err
	}
	if f.enroll != "" {
		if err := enrollDevice(ctx, f.enroll, f.server, f.dir, deviceName(f.name, f.sims, f.fromStdin), stdout); err != nil {
			return fmt.Errorf("device: %w", err)
		}
		f.server = "" // the enrollment's
	} else if f.name != "" {
		fmt.Fprintln(stderr, "telemed device: --name is given at enrollment (--enroll); the device keeps the name it enrolled with")
	}
	level := slog.LevelInfo
	if f.verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level, ReplaceAttr: shortTime}))
	creds, err := deviceapi.LoadCredentials(f.dir)
	if err != nil {
		return fmt.Errorf("device: %w", err)
	}
	setup := source.Setup{Sims: f.sims, Seed: f.seed, BPInterval: f.bpInterval, TempInterval: f.tempInterval}
	if !f.seedSet {
		setup.Seed = source.SeedOf(creds.DeviceID)
	}
	if f.fromStdin {
		setup.Stdin = stdin
		setup.OnBadLine = func(n int, err error) { fmt.Fprintf(stderr, "telemed device: stdin line %d skipped: %v\n", n, err) }
	}
	sources, err := source.Build(setup)
	if err != nil {
		return fmt.Errorf("device: %w", err)
	}
	a, err := agent.New(agent.Options{Dir: f.dir, ServerURL: f.server, Sources: sources, Logger: log, NoLive: f.noLive})
	if err != nil {
		return fmt.Errorf("device: %w", err)
	}
	defer a.Close()
	printStart(stdout, a, f, creds, sources)
	var wg sync.WaitGroup
	pctx, stopProgress := context.WithCancel(ctx)
	wg.Go(func() { progress(pctx, a, stdout) })
	err = a.Run(ctx)
	stopProgress()
	wg.Wait()
	return printStop(stdout, a, f.dir, err)
}

// printStart says what the agent is and what it is about to do.
func printStart(stdout io.Writer, a *agent.Agent, f *deviceFlags, creds deviceapi.Credentials, sources []agent.Source) {
	st := a.Status()
	names := make([]string, 0, len(sources))
	for _, s := range sources {
		names = append(names, s.Name())
	}
	fmt.Fprintf(stdout, "Device %s (%q) of patient %s, sending to %s.\n", creds.DeviceID, creds.Name, creds.PatientID, serverOf(creds, f.server))
	if len(sources) == 0 {
		fmt.Fprintf(stdout, "No --sim or --stdin: sending what the queue holds (%s), then stopping.\n", agent.Batches(st.Queued))
		return
	}
	fmt.Fprintf(stdout, "Measuring with %s; queue in %s (%s waiting). Ctrl-C stops.\n",
		strings.Join(names, ", "), filepath.Join(f.dir, agent.QueueDir), agent.Batches(st.Queued))
}

// printStop says what the agent did, and what to do when the server refuses the device.
func printStop(stdout io.Writer, a *agent.Agent, dir string, err error) error {
	st := a.Status()
	if errors.Is(err, agent.ErrRevoked) {
		fmt.Fprintf(stdout, "Stopped: %d readings taken, %d stored by the server; the server refuses this device, so the %s in its queue cannot be sent.\n",
			st.Taken, st.Accepted, agent.Batches(st.Queued))
		return fmt.Errorf("device: %w. With a new code: enroll into another --dir, or remove %s and move %s aside (or remove it) first",
			err, filepath.Join(dir, deviceapi.CredentialsFile), filepath.Join(dir, agent.QueueDir))
	}
	fmt.Fprintf(stdout, "Stopped: %d readings taken, %d stored by the server; %s in the queue for the next run.\n",
		st.Taken, st.Accepted, agent.Batches(st.Queued))
	if st.Dropped > 0 {
		fmt.Fprintf(stdout, "%s refused by the server (or damaged) are kept in %s.\n", agent.Batches(int(st.Dropped)), filepath.Join(dir, agent.RejectedDir))
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
		line := fmt.Sprintf("%s  %d readings taken; %d stored in %s", time.Now().Format("15:04:05"), st.Taken, st.Accepted, agent.Batches(int(st.Uploaded)))
		if st.Rejected > 0 || st.Dropped > 0 {
			line += fmt.Sprintf(" (%d readings refused, %s refused whole)", st.Rejected, agent.Batches(int(st.Dropped)))
		}
		line += fmt.Sprintf("; %s waiting", agent.Batches(st.Queued))
		if st.Live != "" {
			line += fmt.Sprintf("; live in consultation %s (%d readings streamed)", st.Live, st.Streamed)
		}
		fmt.Fprintln(stdout, line)
	}
}

// enrollDevice enrolls the folder as agent.EnrollFolder decides, and says what happened.
func enrollDevice(ctx context.Context, linkOrCode, serverURL, dir, name string, stdout io.Writer) error {
	res, err := agent.EnrollFolder(ctx, agent.EnrollOptions{Dir: dir, LinkOrCode: linkOrCode, Server: serverURL, Name: name})
	if err != nil {
		return err
	}
	c, creds := res.Credentials, filepath.Join(dir, deviceapi.CredentialsFile)
	switch res.Outcome {
	case agent.AlreadyWithThisCode:
		fmt.Fprintf(stdout, "Already enrolled as %s (%q) for patient %s at %s, with this code: --enroll is not needed any more (credentials in %s).\n",
			c.DeviceID, c.Name, c.PatientID, c.Server, creds)
	case agent.AlreadyCodeUnknown:
		fmt.Fprintf(stdout, "Already enrolled as %s (%q) for patient %s at %s (credentials in %s): --enroll is not needed any more, and is not used. "+
			"To enroll this folder as another device, remove %s first.\n", c.DeviceID, c.Name, c.PatientID, c.Server, creds, creds)
	default:
		fmt.Fprintf(stdout, "Enrolled as %s (%q) for patient %s at %s; credentials saved in %s.\n",
			c.DeviceID, c.Name, c.PatientID, c.Server, creds)
	}
	return nil
}

// deviceName is --name, or the name agent.DefaultName gives a device on this machine.
func deviceName(name string, sims []string, fromStdin bool) string {
	if name != "" {
		return name
	}
	host, _ := os.Hostname() // unknown, the name says what the device measures only
	return agent.DefaultName(sims, fromStdin, host)
}

func serverOf(c deviceapi.Credentials, override string) string {
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
