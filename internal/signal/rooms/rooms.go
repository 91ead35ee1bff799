// Package rooms keeps what the signaling hub knows of each consultation's call: its waiting room and
// members, who holds which place and where their connection is. Nodes that share a Store share the
// rooms, so participants of one consultation may connect to different nodes, and a node may stop
// without anyone losing their place. Memory is the Store of a single node; package cluster has the
// one that nodes share over Redis.
package rooms

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/telemed/telemed/internal/consult"
)

// Room is one consultation's signaling state.
type Room struct {
	ID           string `json:"id"`
	Title        string `json:"title"`
	ProviderName string `json:"provider_name"`
	// State is the waiting room and call; nil for a room being created (Update's fn sets it).
	State *consult.Room `json:"-"`
	// People are the participants by id: what the hub keeps of them beside State.
	People map[string]*Person `json:"people"`
	// Stopped are the links stopped for good in this consultation (a removed person's, a revoked
	// device's or invitation's), by the hub's key: a join let through just before must not get in.
	Stopped map[string]bool `json:"stopped,omitempty"`
}

// Person is a participant's place, across reconnections.
type Person struct {
	Role    consult.Role `json:"role"`
	Subject string       `json:"subject,omitempty"` // the device or invitation the link was issued to
	Name    string       `json:"name"`
	Resume  string       `json:"resume"` // the secret that resumes the place
	// Conn names the live connection: the node holding it, a space, the connection on that node;
	// "" while the participant has none.
	Conn string `json:"conn,omitempty"`
	// LostAt is when the participant lost its connection; zero while connected.
	LostAt time.Time `json:"lost_at,omitzero"`
}

// Node is the node part of a Person's Conn.
func (p *Person) Node() string {
	for i := 0; i < len(p.Conn); i++ {
		if p.Conn[i] == ' ' {
			return p.Conn[:i]
		}
	}
	return p.Conn
}

// Store keeps the rooms.
type Store interface {
	// Update runs fn on the room of a consultation with nobody else changing it meanwhile, keeps what
	// fn left (a room with no People left is deleted), then runs then, still before anyone else may
	// change the room: the hub sends there what the change causes, so that messages go out in the
	// order of the changes, and only once a change is kept. A consultation without a room gets a new
	// one with State nil. When fn returns an error nothing is kept and then does not run.
	Update(ctx context.Context, id string, fn func(r *Room) error, then func()) error
	// View runs fn on the room of a consultation as it is now (nil if it has none); fn must not
	// change it.
	View(ctx context.Context, id string, fn func(r *Room)) error
	// IDs lists the consultations that have a room.
	IDs(ctx context.Context) ([]string, error)
}

// wire is a Room as encoded: its State as a snapshot.
type wire struct {
	*Room
	State consult.RoomSnapshot `json:"state"`
}

// Encode is r in JSON, for a Store that keeps rooms outside the process.
func Encode(r *Room) ([]byte, error) {
	b, err := json.Marshal(wire{Room: r, State: r.State.Snapshot()})
	if err != nil {
		return nil, fmt.Errorf("encode room %s: %w", r.ID, err)
	}
	return b, nil
}

// Decode is the Room that Encode made b of.
func Decode(b []byte) (*Room, error) {
	w := wire{Room: &Room{}}
	if err := json.Unmarshal(b, &w); err != nil {
		return nil, fmt.Errorf("decode room: %w", err)
	}
	w.Room.State = consult.RestoreRoom(w.State)
	if w.Room.People == nil {
		w.Room.People = map[string]*Person{}
	}
	return w.Room, nil
}

// Memory is the Store of one node: rooms in the process, saved and loaded whole (Export, Import) so
// that a restart keeps them.
type Memory struct {
	mu    sync.Mutex
	rooms map[string]*Room
}

var _ Store = (*Memory)(nil)

// NewMemory returns an empty Memory.
func NewMemory() *Memory { return &Memory{rooms: make(map[string]*Room)} }

// Update implements Store. One lock serves every room: each update is a few map operations.
func (s *Memory) Update(_ context.Context, id string, fn func(r *Room) error, then func()) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.rooms[id]
	if r == nil {
		r = &Room{ID: id, People: map[string]*Person{}}
	}
	if err := fn(r); err != nil {
		if len(r.People) == 0 {
			delete(s.rooms, id)
		}
		return err
	}
	if len(r.People) == 0 || r.State == nil {
		delete(s.rooms, id)
	} else {
		s.rooms[id] = r
	}
	if then != nil {
		then()
	}
	return nil
}

// View implements Store.
func (s *Memory) View(_ context.Context, id string, fn func(r *Room)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	fn(s.rooms[id])
	return nil
}

// IDs implements Store.
func (s *Memory) IDs(context.Context) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := make([]string, 0, len(s.rooms))
	for id := range s.rooms {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids, nil
}

// Export encodes every room, for Import after a restart.
func (s *Memory) Export() ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	all := make([]json.RawMessage, 0, len(s.rooms))
	for _, r := range s.rooms {
		b, err := Encode(r)
		if err != nil {
			return nil, err
		}
		all = append(all, b)
	}
	return json.Marshal(all)
}

// Import adds the rooms that Export encoded.
func (s *Memory) Import(b []byte) error {
	var all []json.RawMessage
	if err := json.Unmarshal(b, &all); err != nil {
		return fmt.Errorf("import rooms: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, raw := range all {
		r, err := Decode(raw)
		if err != nil {
			return fmt.Errorf("import rooms: %w", err)
		}
		s.rooms[r.ID] = r
	}
	return nil
}
