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
