package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/term"

	"github.com/telemed/telemed/internal/config"
	"github.com/telemed/telemed/internal/consult"
	"github.com/telemed/telemed/internal/consultations"
	"github.com/telemed/telemed/internal/server"
	"github.com/telemed/telemed/internal/store"
)

// storeFlags are where a one-off command finds the server's records: --data and --store, as serve
// takes them.
type storeFlags struct{ data, store string }

// openServices opens the store for a one-off command, beside a running server or not.
func openServices(ctx context.Context, at storeFlags, baseURL string) (server.Services, func(), error) {
	st, err := server.OpenStore(ctx, at.data, at.store)
	if err != nil {
		return server.Services{}, nil, err
	}
	if baseURL == "" {
		baseURL, err = st.Setting(ctx, server.SettingBaseURL)
		if errors.Is(err, store.ErrNotFound) {
			baseURL, err = "http://"+config.DefaultHTTPAddr, nil
		}
		if err != nil {
			st.Close()
			return server.Services{}, nil, err
		}
	}
	svc, err := server.NewServices(ctx, st, strings.TrimRight(baseURL, "/"), nil, nil)
	if err != nil {
		st.Close()
		return server.Services{}, nil, err
	}
	return svc, func() { st.Close() }, nil
}

// openAs opens the store for a one-off command that acts as the provider with this email.
func openAs(ctx context.Context, at storeFlags, baseURL, email, command string) (server.Services, consult.Provider, func(), error) {
	svc, closeStore, err := openServices(ctx, at, baseURL)
	if err != nil {
		return server.Services{}, consult.Provider{}, nil, err
	}
	p, err := svc.Accounts.ProviderByEmail(ctx, email)
	if err != nil {
		closeStore()
		return server.Services{}, consult.Provider{}, nil, fmt.Errorf("%s: %w", command, err)
	}
	return svc, p, closeStore, nil
}

// printJSON prints v as the API returns it, indented for people.
func printJSON(stdout io.Writer, v any) error {
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// newFlags starts the flags of a one-off command with --data and --store.
func newFlags(name string, stderr io.Writer) (*flag.FlagSet, *storeFlags) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	at := &storeFlags{data: config.DefaultDataDir}
	fs.StringVar(&at.data, "data", at.data, "`folder` of the server's database (SQLite) and files")
	config.StoreFlag(fs, &at.store)
	return fs, at
}

func providerAdd(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs, data := newFlags("telemed provider add", stderr)
	email := fs.String("email", "", "the provider's email, used to sign in (required)")
	name := fs.String("name", "", "the provider's name as patients see it (required)")
	fromStdin := fs.Bool("password-stdin", false, "read the password from standard input (a prompt without echo on a terminal)")
	if err := config.Parse(fs, args, nil); err != nil {
		return err
	}
	if *email == "" || *name == "" {
		return errors.New("provider add: --email and --name are required")
	}
	if !*fromStdin {
		return errors.New("provider add: pass --password-stdin and give the password on standard input (it is never a flag: flags show up in the process list)")
	}
	password, err := readPassword(stdin, stderr)
	if err != nil {
		return err
	}
	svc, closeStore, err := openServices(ctx, *data, "")
	if err != nil {
		return err
	}
	defer closeStore()
	p, err := svc.Accounts.AddProvider(ctx, *email, *name, password)
	if err != nil {
		return fmt.Errorf("provider add: %w", err)
	}
	fmt.Fprintf(stdout, "Provider %s <%s> added (id %s).\n", p.Name, p.Email, p.ID)
	return nil
}

// readPassword reads one line from stdin, prompting twice without echo when stdin is a terminal.
func readPassword(stdin io.Reader, stderr io.Writer) (string, error) {
	if f, ok := stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprint(stderr, "Password: ")
		first, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(stderr)
		if err != nil {
			return "", fmt.Errorf("read password: %w", err)
		}
		fmt.Fprint(stderr, "Password again: ")
		second, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(stderr)
		if err != nil {
			return "", fmt.Errorf("read password: %w", err)
		}
		if string(first) != string(second) {
			return "", errors.New("the passwords do not match")
		}
		return string(first), nil
	}
	line, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read password: %w", err)
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", errors.New("no password on standard input")
	}
	return line, nil
}

func consultNew(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, data := newFlags("telemed consult new", stderr)
	email := fs.String("provider", "", "`email` of the provider who holds the consultation (required)")
	title := fs.String("title", "", "a title the provider and patient see")
	expires := fs.Duration("expires-in", consultations.DefaultLinkTTL, "how long the links work")
	baseURL := fs.String("base-url", "", "public `URL` for the links (default: the one the server last ran with)")
	asJSON := fs.Bool("json", false, "print the consultation as JSON, as the API returns it (id, start_url, join_url, expires_at, ...)")
	if err := config.Parse(fs, args, nil); err != nil {
		return err
	}
	if *email == "" {
		return errors.New("consult new: --provider is required")
	}
	svc, p, closeStore, err := openAs(ctx, *data, *baseURL, *email, "consult new")
	if err != nil {
		return err
	}
	defer closeStore()
	v, err := svc.Consultations.CreateConsultation(ctx, p, p.ID+" (cli)", consultations.NewConsultation{Title: *title, TTL: *expires})
	if err != nil {
		return fmt.Errorf("consult new: %w", err)
	}
	if *asJSON {
		return printJSON(stdout, v)
	}
	fmt.Fprintf(stdout, "Consultation %s (links work until %s)\n\n  Provider (you): %s\n  Patient:        %s\n",
		v.ID, v.ExpiresAt.Local().Format("2006-01-02 15:04 MST"), v.StartURL, v.JoinURL)
	return nil
}

// consultInvite invites one more person into a consultation, as its provider.
func consultInvite(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, data := newFlags("telemed consult invite", stderr)
	id := fs.String("consultation", "", "`id` of the consultation (required; consult new prints it)")
	role := fs.String("role", "", "guest (an interpreter, family member or caregiver) or clinician (who may admit and remove people) (required)")
	name := fs.String("name", "", "the invited person's `name`, shown to everyone in the call (required)")
	baseURL := fs.String("base-url", "", "public `URL` for the link (default: the one the server last ran with)")
	asJSON := fs.Bool("json", false, "print the invitation as JSON, as the API returns it (id, join_url, role, name, expires_at)")
	if err := config.Parse(fs, args, nil); err != nil {
		return err
	}
	if *id == "" || *role == "" || *name == "" {
		return errors.New("consult invite: --consultation, --role and --name are required")
	}
	svc, closeStore, err := openServices(ctx, *data, *baseURL)
	if err != nil {
		return err
	}
	defer closeStore()
	p, err := svc.Consultations.Owner(ctx, *id)
	if err != nil {
		return fmt.Errorf("consult invite: %w", err)
	}
	v, err := svc.Consultations.Invite(ctx, consultations.ProviderCaller(p, p.ID+" (cli)"), *id, consult.Role(*role), *name)
	if err != nil {
		return fmt.Errorf("consult invite: %w", err)
	}
	if *asJSON {
		return printJSON(stdout, v)
	}
	fmt.Fprintf(stdout, "Invitation %s: %s as %s (the link works until %s)\n\n  %s\n",
		v.ID, v.Name, v.Role, v.ExpiresAt.Local().Format("2006-01-02 15:04 MST"), v.JoinURL)
	return nil
}

func tokenCreate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, data := newFlags("telemed token create", stderr)
	email := fs.String("provider", "", "`email` of the provider the token acts as (required)")
	name := fs.String("name", "api", "a label to recognise the token by")
	if err := config.Parse(fs, args, nil); err != nil {
		return err
	}
	if *email == "" {
		return errors.New("token create: --provider is required")
	}
	svc, p, closeStore, err := openAs(ctx, *data, "", *email, "token create")
	if err != nil {
		return err
	}
	defer closeStore()
	token, err := svc.Accounts.CreateAPIToken(ctx, p.ID, *name)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, token)
	return nil
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
		return printJSON(stdout, e)
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
	svc, p, closeStore, err := openAs(ctx, *data, "", *email, "patient add")
	if err != nil {
		return err
	}
	defer closeStore()
	pt, err := svc.Monitoring.AddPatient(ctx, p, p.ID+" (cli)", *name, *birth)
	if err != nil {
		return fmt.Errorf("patient add: %w", err)
	}
	fmt.Fprintf(stderr, "Patient %s added for %s. Enroll a device: telemed device enroll --patient %s\n", pt.Name, p.Email, pt.ID)
	fmt.Fprintln(stdout, pt.ID)
	return nil
}
