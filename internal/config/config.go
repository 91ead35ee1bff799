// Package config is telemed's configuration: defaults in one place, command-line flags, and an
// environment variable TELEMED_<FLAG> for every flag, validated before anything starts.
package config

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
)

// Defaults.
const (
	DefaultHTTPAddr = "127.0.0.1:8080"
	DefaultDataDir  = "./telemed-data"
)

// Serve configures `telemed serve`.
type Serve struct {
	HTTPAddr       string   // --http: address to listen on
	DataDir        string   // --data: folder for the database and secrets
	BaseURL        string   // --base-url: public URL in links; derived from --http if empty
	TLSCert        string   // --tls-cert: certificate file (PEM); serve HTTPS when set
	TLSKey         string   // --tls-key: private key file (PEM)
	LogLevel       string   // --log-level: debug, info, warn, error
	AllowedOrigins []string // --allowed-origin: extra origins whose pages may use the API (repeatable)
}

// DefaultServe returns the defaults of `telemed serve`.
func DefaultServe() Serve {
	return Serve{HTTPAddr: DefaultHTTPAddr, DataDir: DefaultDataDir, LogLevel: "info"}
}

// Flags registers c's fields on fs.
func (c *Serve) Flags(fs *flag.FlagSet) {
	fs.StringVar(&c.HTTPAddr, "http", c.HTTPAddr, "`address` to serve HTTP on")
	fs.StringVar(&c.DataDir, "data", c.DataDir, "`folder` for the database and secrets")
	fs.StringVar(&c.BaseURL, "base-url", c.BaseURL, "public `URL` used in links (default: http://<http address>)")
	fs.StringVar(&c.TLSCert, "tls-cert", c.TLSCert, "TLS certificate `file` (PEM); serves HTTPS when set with --tls-key")
	fs.StringVar(&c.TLSKey, "tls-key", c.TLSKey, "TLS private key `file` (PEM)")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "log `level`: debug, info, warn or error")
	fs.Func("allowed-origin", "extra `origin` (scheme://host:port) whose pages may use this server; repeatable", func(s string) error {
		c.AllowedOrigins = append(c.AllowedOrigins, s)
		return nil
	})
}

// Validate checks the configuration and fills in derived values. Its errors say what to fix.
func (c *Serve) Validate() error {
	var errs []error
	if _, _, err := net.SplitHostPort(c.HTTPAddr); err != nil {
		errs = append(errs, fmt.Errorf("--http %q: want host:port, such as 127.0.0.1:8080", c.HTTPAddr))
	}
	if strings.TrimSpace(c.DataDir) == "" {
		errs = append(errs, errors.New("--data: a folder is required"))
	}
	if c.BaseURL != "" {
		u, err := url.Parse(c.BaseURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
			errs = append(errs, fmt.Errorf("--base-url %q: want scheme://host[:port] with no path, such as https://telemed.example.org", c.BaseURL))
		}
		c.BaseURL = strings.TrimRight(c.BaseURL, "/")
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		errs = append(errs, errors.New("--tls-cert and --tls-key go together"))
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("--log-level %q: want debug, info, warn or error", c.LogLevel))
	}
	for _, o := range c.AllowedOrigins {
		if u, err := url.Parse(o); err != nil || u.Host == "" {
			errs = append(errs, fmt.Errorf("--allowed-origin %q: want scheme://host[:port]", o))
		}
	}
	return errors.Join(errs...)
}

// OriginHosts returns the host[:port] of each allowed origin.
func (c *Serve) OriginHosts() []string {
	var hosts []string
	for _, o := range c.AllowedOrigins {
		if u, err := url.Parse(o); err == nil {
			hosts = append(hosts, u.Host)
		}
	}
	return hosts
}

// DatabasePath is the SQLite file inside a data folder.
func DatabasePath(dataDir string) string { return filepath.Join(dataDir, "telemed.db") }

// EnvName is the environment variable that sets a flag: TELEMED_ and the flag's name in upper case with
// dashes as underscores (--base-url is TELEMED_BASE_URL).
func EnvName(flagName string) string {
	return "TELEMED_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// Parse parses args into fs, after applying TELEMED_<FLAG> environment variables for the flags the
// command line does not set. The command line wins over the environment.
func Parse(fs *flag.FlagSet, args []string, getenv func(string) string) error {
	if getenv == nil {
		getenv = os.Getenv
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] {
			return
		}
		if v := getenv(EnvName(f.Name)); v != "" {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", EnvName(f.Name), v, err))
			}
		}
	})
	return errors.Join(errs...)
}
