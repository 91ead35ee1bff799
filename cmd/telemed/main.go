// Command telemed is a self-hostable telemedicine server: secure peer-to-peer video consultations in
// the browser, with a waiting room, signed invite links and an audit trail.
//
//	telemed serve                 run the server (SQLite in ./telemed-data, HTTP on 127.0.0.1:8080)
//	telemed provider add          create a provider account
//	telemed consult new           create a consultation and print its links
//	telemed consult invite        invite a guest or another clinician into a consultation
//	telemed token create          create an API token for an EHR or scheduler
//	telemed patient add           create a patient of a provider
//	telemed device enroll         create a code that enrolls a monitoring device to a patient
//	telemed device                run the device agent: readings to the server, live into consultations
//	telemed migrate               apply the store's migrations and say what was applied
//	telemed store copy            copy every record of one store into PostgreSQL, and verify the copy
//
// Every command that takes --data also takes --store postgres://... to keep its records in
// PostgreSQL instead of the SQLite file in --data.
//
// Every flag can also be set with an environment variable TELEMED_<FLAG>, e.g. TELEMED_BASE_URL.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

const usage = `telemed: secure video consultations, self-hosted.

Usage:
  telemed serve [--http ADDR] [--data DIR] [--store URL] [--base-url URL]
  telemed provider add --email E --name N --password-stdin [--data DIR] [--store URL]
  telemed consult new --provider E [--title T] [--expires-in 24h] [--base-url URL] [--json] [--data DIR] [--store URL]
  telemed consult invite --consultation ID --role guest|clinician --name N [--base-url URL] [--json] [--data DIR] [--store URL]
  telemed token create --provider E [--name N] [--data DIR] [--store URL]
  telemed patient add --provider E --name N [--birth-date YYYY-MM-DD] [--data DIR] [--store URL]
  telemed device enroll --patient ID [--base-url URL] [--json] [--data DIR] [--store URL]
  telemed device [--enroll LINK|CODE] [--server URL] [--dir DIR] [--name N]
                 [--sim pulse-oximeter|bp-cuff|thermometer|ecg|resp]... [--stdin]
                 [--bp-interval 5m] [--temp-interval 10m] [--no-live]
  telemed migrate [--data DIR] [--store URL]
  telemed store copy --from DIR|URL --to URL [--replace]

Run "telemed COMMAND -h" for a command's flags. Every flag can also be set with an
environment variable TELEMED_<FLAG> (for example TELEMED_DATA, TELEMED_STORE or TELEMED_BASE_URL).
--store postgres://USER@HOST/DB keeps the records in PostgreSQL (several nodes may share it);
without it they are in the SQLite file in --data.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "telemed:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("no command given")
	}
	cmd, rest := args[0], args[1:]
	sub := ""
	if len(rest) > 0 {
		sub = rest[0]
	}
	switch {
	case cmd == "serve":
		return serve(ctx, rest, stdout, stderr)
	case cmd == "provider" && sub == "add":
		return providerAdd(ctx, rest[1:], stdin, stdout, stderr)
	case cmd == "consult" && sub == "new":
		return consultNew(ctx, rest[1:], stdout, stderr)
	case cmd == "consult" && sub == "invite":
		return consultInvite(ctx, rest[1:], stdout, stderr)
	case cmd == "token" && sub == "create":
		return tokenCreate(ctx, rest[1:], stdout, stderr)
	case cmd == "patient" && sub == "add":
		return patientAdd(ctx, rest[1:], stdout, stderr)
	case cmd == "device" && sub == "enroll":
		return deviceEnroll(ctx, rest[1:], stdout, stderr)
	case cmd == "device":
		return device(ctx, rest, stdin, stdout, stderr)
	case cmd == "migrate":
		return migrate(ctx, rest, stdout, stderr)
	case cmd == "store" && sub == "copy":
		return storeCopy(ctx, rest[1:], stdout, stderr)
	case cmd == "help" || cmd == "-h" || cmd == "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown command %q", cmd+" "+sub)
	}
}
