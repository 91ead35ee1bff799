package client_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/telemed/telemed/client"
)

// A patient program joins with its link, waits to be admitted, and talks over a data channel.
func ExampleJoin() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := client.Join(ctx, client.Config{
		Link:         "https://telemed.example.org/c/c_8kq3#t=...", // the join_url
		Name:         "Ada Lovelace",
		DataChannels: []client.DataChannelSpec{{Label: "notes"}},
		OnDataChannel: func(p *client.Peer, dc *webrtc.DataChannel) {
			dc.OnOpen(func() { dc.SendText("hello, " + p.Name) })
			dc.OnMessage(func(m webrtc.DataChannelMessage) { fmt.Println(string(m.Data)) })
		},
	})
	if err != nil {
		log.Fatal(err) // a *client.Error says why the server refused, e.g. link_expired
	}
	defer s.Leave(context.Background())
	if err := s.WaitAdmitted(ctx); err != nil {
		log.Fatal(err) // client.ErrDeclined if the provider declined
	}
	for ev := range s.Events() {
		if ev.Type == client.EventPeerLeft || ev.Type == client.EventClosed {
			return
		}
	}
}

// A provider program admits whoever is waiting.
func ExampleSession_Admit() {
	ctx := context.Background()
	s, err := client.Join(ctx, client.Config{Link: "https://telemed.example.org/c/c_8kq3#t=..."}) // the start_url
	if err != nil {
		log.Fatal(err)
	}
	defer s.Leave(ctx)
	for ev := range s.Events() {
		if ev.Type == client.EventLobby && len(ev.Waiting) > 0 {
			s.Admit(ctx, ev.Waiting[0].ID)
		}
	}
}

// In a group visit a provider program admits everyone who waits, chats to all of them, turns its
// camera off for the others, shares a screen, and removes a guest.
func ExampleSession_PublishScreen() {
	ctx := context.Background()
	screen, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8}, "screen", "screen")
	if err != nil {
		log.Fatal(err)
	}
	s, err := client.Join(ctx, client.Config{Link: "https://telemed.example.org/c/c_8kq3#t=..."}) // the start_url
	if err != nil {
		log.Fatal(err)
	}
	defer s.Leave(ctx)
	for ev := range s.Events() {
		switch ev.Type {
		case client.EventLobby:
			for _, w := range ev.Waiting {
				s.Admit(ctx, w.ID) // the patient, and each invited guest or clinician
			}
		case client.EventPeerConnected:
			if len(s.Peers()) < 3 {
				continue
			}
			s.SendChat("Welcome, everyone")                      // one message to every person
			s.SetMedia(ctx, true, false, false)                  // microphone on, camera off
			if err := s.PublishScreen(ctx, screen); err != nil { // write the screen's frames into it
				log.Print(err)
			}
		case client.EventMedia:
			fmt.Printf("%s: camera on %v\n", ev.Peer.Name, ev.Media.Video)
		case client.EventPeerJoined:
			if ev.Peer.Role == "guest" && ev.Peer.Name == "Not invited by me" {
				s.Remove(ctx, ev.Peer.ID) // their link no longer joins; they get client.ErrRemoved
			}
		case client.EventClosed:
			return
		}
	}
}
