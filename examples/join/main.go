// Command join takes part in a telemed consultation from a link, with the public Go client: it joins,
// prints the welcome and who is in the call, waits to be admitted (a patient link) or admits whoever
// waits (a provider link, with -admit), then prints what happens, chat included, until Ctrl-C.
//
//	go run . -name Ada 'http://127.0.0.1:8080/c/c_...#t=...'
//
// It lives in a module of its own, as a program of yours would: it can use only telemed's public
// packages (client, protocol, errcode, vitals), never internal/ ones.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/telemed/telemed/client"
	"github.com/telemed/telemed/errcode"
	"github.com/telemed/telemed/protocol"
)

func main() {
	name := flag.String("name", "Go example", "the name the other side sees (patients)")
	admit := flag.Bool("admit", false, "with a provider link: admit whoever is waiting")
	verbose := flag.Bool("v", false, "log the client's connection events")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: join [flags] LINK\n\nLINK is a consultation's join_url (patient) or start_url (provider).\n\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	// Ctrl-C (or SIGTERM) ends ctx; run then leaves the call, so the others are told at once.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, flag.Arg(0), *name, *admit, *verbose); err != nil {
		fmt.Fprintln(os.Stderr, "join:", err)
		os.Exit(exitCode(err))
	}
}

func run(ctx context.Context, link, name string, admit, verbose bool) error {
	cfg := client.Config{
		Link: link,
		Name: name,
		OnChat: func(p *client.Peer, m client.ChatMessage) {
			fmt.Printf("chat from %q: %s\n", p.Name, m.Text)
		},
		OnChatDelivered: func(p *client.Peer, id string) {
			fmt.Printf("chat delivered to %q\n", p.Name)
		},
	}
	if verbose {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	s, err := client.Join(ctx, cfg)
	if err != nil {
		return err // a *client.Error when the server refused: its Code says why, its Message for a person
	}
	defer func() {
		// ctx may be over (Ctrl-C): leaving gets a few seconds of its own.
		lctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Leave(lctx)
		fmt.Println("left the consultation")
	}()

	asked := map[string]bool{} // whom -admit admitted already: a lobby can list them again meanwhile
	w := s.Welcome()
	fmt.Printf("joined %s %q of %s as %s %q (id %s), %s\n", w.Consultation.ID, w.Consultation.Title,
		w.Consultation.ProviderName, w.You.Role, w.You.Name, w.You.ID, w.State)
	printPeers("in the call", w.Peers)
	if w.You.Role == "provider" {
		printWaiting(w.Waiting)
		if admit {
			admitAll(ctx, s, w.Waiting, asked)
		}
	}

	if w.State == protocol.StateWaiting {
		fmt.Println("waiting to be admitted (Ctrl-C to leave)")
	}
	if err := s.WaitAdmitted(ctx); err != nil {
		if ctx.Err() != nil {
			return nil // Ctrl-C while waiting
		}
		if errors.Is(err, client.ErrDeclined) {
			return errors.New("the provider declined")
		}
		return err
	}
	if w.State == protocol.StateWaiting {
		fmt.Println("admitted")
	}
	for _, p := range s.Peers() {
		fmt.Printf("peer %s (%s) %q\n", p.ID, p.Role, p.Name)
	}

	return follow(ctx, s, admit, asked)
}

// follow prints what happens in the call until it ends or ctx does; with admit, it admits whoever
// waits (asked: whom it admitted already).
func follow(ctx context.Context, s *client.Session, admit bool, asked map[string]bool) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-s.Events():
			if !ok {
				return nil
			}
			switch ev.Type {
			case client.EventLobby:
				printWaiting(ev.Waiting)
				if admit {
					admitAll(ctx, s, ev.Waiting, asked)
				}
			case client.EventPeerJoined:
				fmt.Printf("%s %q joined\n", ev.Peer.Role, ev.Peer.Name)
			case client.EventPeerConnected:
				fmt.Printf("connected peer to peer with %q\n", ev.Peer.Name)
				go greet(ctx, ev.Peer)
			case client.EventPeerLeft:
				fmt.Printf("%q left (%s)\n", ev.Peer.Name, ev.Reason)
			case client.EventError:
				fmt.Println("server:", ev.Err)
			case client.EventReconnecting:
				fmt.Println("connection lost; resuming")
			case client.EventReconnected:
				fmt.Println("connection back")
			case client.EventRejoined:
				fmt.Printf("joined again as %s\n", s.ID())
			case client.EventClosed:
				if ev.Err != nil {
					return ev.Err
				}
				return nil
			}
		}
	}
}

// greet sends p a chat message once the chat channel, which opens after the connection, is open.
func greet(ctx context.Context, p *client.Peer) {
	err := p.WaitChat(ctx)
	if err == nil {
		_, err = p.SendChat("Hello from the Go example")
	}
	if err != nil && ctx.Err() == nil {
		fmt.Printf("chat to %q: %v\n", p.Name, err)
	}
}

func printPeers(what string, peers []protocol.Peer) {
	if len(peers) == 0 {
		fmt.Printf("%s: nobody else\n", what)
		return
	}
	names := make([]string, len(peers))
	for i, p := range peers {
		names[i] = fmt.Sprintf("%s %q (%s)", p.Role, p.Name, p.ID)
	}
	fmt.Printf("%s: %s\n", what, strings.Join(names, ", "))
}

func printWaiting(waiting []protocol.Waiting) {
	if len(waiting) == 0 {
		fmt.Println("waiting room: empty")
		return
	}
	for _, w := range waiting {
		fmt.Printf("waiting room: %q (%s), since %s\n", w.Name, w.ID, w.Since.Local().Format(time.TimeOnly))
	}
}

// admitAll admits whoever waits and has not been asked for already.
func admitAll(ctx context.Context, s *client.Session, waiting []protocol.Waiting, asked map[string]bool) {
	for _, w := range waiting {
		if asked[w.ID] {
			continue
		}
		asked[w.ID] = true
		if err := s.Admit(ctx, w.ID); err != nil {
			fmt.Printf("admit %q: %v\n", w.Name, err)
			continue
		}
		fmt.Printf("admitted %q\n", w.Name)
	}
}

// exitCode is 3 when the link itself will not work again, so that a script knows to get a new one,
// and 1 for any other failure. The codes are docs/signaling.md's, as errcode's constants.
func exitCode(err error) int {
	var ce *client.Error
	if errors.As(err, &ce) {
		switch ce.Code {
		case errcode.BadToken, errcode.LinkExpired, errcode.WrongConsultation, errcode.Ended:
			return 3
		}
	}
	return 1
}
