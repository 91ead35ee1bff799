package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"

	"github.com/telemed/telemed/internal/config"
	"github.com/telemed/telemed/internal/server"
	"github.com/telemed/telemed/internal/store/postgres"
	"github.com/telemed/telemed/internal/turn"
)

func serve(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg := config.DefaultServe()
	fs := flag.NewFlagSet("telemed serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg.Flags(fs)
	if err := config.Parse(fs, args, nil); err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("configuration:\n%w", err)
	}
	var level slog.Level
	level.UnmarshalText([]byte(cfg.LogLevel))
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	slog.SetDefault(log)

	srv, err := server.Start(ctx, cfg, server.Options{Logger: log})
	if err != nil {
		return err
	}
	defer srv.Close()

	fmt.Fprintf(stdout, "telemed is running at %s (%s)\n", srv.BaseURL(), whereRecords(cfg.DataDir, cfg.StoreURL))
	if t := srv.TURN(); t != nil {
		fmt.Fprintf(stdout, "STUN/TURN on port %d (UDP and TCP), relaying on UDP %s: open them in the firewall for patients on other networks\n",
			turn.Port(t.UDPAddr()), cfg.TURNRelayPorts)
	} else {
		fmt.Fprintf(stdout, "The built-in STUN/TURN is off (--turn=false)\n")
	}
	fmt.Fprintln(stdout)
	setup, err := srv.Services().Accounts.SetupToken(ctx)
	if err != nil {
		return err
	}
	if setup != "" {
		fmt.Fprintf(stdout, "First steps:\n  1. Create the first provider account: open %s/setup#t=%s\n", srv.BaseURL(), setup)
		fmt.Fprintf(stdout, "     (or: telemed provider add %s --email you@clinic.example --name \"Your Name\" --password-stdin)\n", storeArgs(cfg.DataDir, cfg.StoreURL))
	} else {
		fmt.Fprintf(stdout, "First steps:\n  1. Sign in at %s/login\n", srv.BaseURL())
	}
	fmt.Fprintf(stdout, "  2. Create a consultation on the dashboard and send the patient link.\n")
	fmt.Fprintf(stdout, "  3. Press Start to open your side; admit the patient from the waiting room.\n\n")
	log.Info("serving", "url", srv.BaseURL(), "data", cfg.DataDir, "store", storeName(cfg.StoreURL))

	select {
	case <-ctx.Done():
		log.Info("shutting down")
		return nil
	case err := <-srv.Done():
		return err
	}
}

// storeName is the store as a person reads it: sqlite, or the PostgreSQL URL without its password.
func storeName(storeURL string) string {
	if storeURL == "" {
		return "sqlite"
	}
	return postgres.Redact(storeURL)
}

// whereRecords says where serve keeps its records and files.
func whereRecords(dataDir, storeURL string) string {
	if storeURL == "" {
		return "data in " + dataDir
	}
	return "records in " + storeName(storeURL) + ", files in " + dataDir
}

// storeArgs are the flags that point a one-off command at the same store as serve.
func storeArgs(dataDir, storeURL string) string {
	if storeURL == "" {
		return "--data " + dataDir
	}
	return "--store '" + storeName(storeURL) + "'"
}
