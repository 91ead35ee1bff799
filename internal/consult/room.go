package consult

import (
	"slices"
	"time"
)

// Member is a participant as the waiting room sees it.
type Member struct {
	ID    string
	Role  Role
	Name  string
	Since time.Time // when they arrived
	// Media is what the member last said of its microphone, camera and screen.
	Media Media
	// CanShare is whether the member may share a screen: providers and clinicians always, others
	// once allowed.
	CanShare bool

	admitted bool
	order    int // admission order; the earlier admitted member of a pair is the polite one
}

// Media is a participant's media state: microphone on, camera on, sharing a screen.
type Media struct {
	Audio, Video, Screen bool
}

// Admitted reports whether the member is in the call rather than the waiting room.
func (m Member) Admitted() bool { return m.admitted }

// Room is the waiting room and call of one consultation. It is a plain state machine: it does no I/O
// and is not safe for concurrent use; its owner serialises access.
type Room struct {
	members   map[string]*Member
	next      int
	maxPeople int
}

// Limits on the people in a call (devices are not counted).
const (
	DefaultMaxPeople = 4
	MinMaxPeople     = 2
	MaxMaxPeople     = 6 // a full mesh: each person sends to every other, so the uplink bounds it
)

// NewRoom returns an empty room whose call holds at most maxPeople people (DefaultMaxPeople if 0).
func NewRoom(maxPeople int) *Room {
	if maxPeople <= 0 {
		maxPeople = DefaultMaxPeople
	}
	return &Room{members: make(map[string]*Member), maxPeople: maxPeople}
}

// MaxPeople is how many people the call holds.
func (r *Room) MaxPeople() int { return r.maxPeople }

// MaxWaiting is how many may wait at once. The bound keeps anyone who holds a link from filling the
// server, and the provider's screen, with arrivals.
const MaxWaiting = 20

// MaxDevices is how many of the patient's devices may be in a call at once.
const MaxDevices = 8

// Add puts a new member in the room. Providers and the patient's devices (which hold a link only the
// server gives them) go straight into the call; other people wait to be admitted. A person is refused
// when the call already holds MaxPeople people (ErrCallFull) or MaxWaiting already wait
// (ErrWaitingRoomFull).
func (r *Room) Add(m Member) (Member, error) {
	switch {
	case m.Role.Person() && r.people() >= r.maxPeople:
		return Member{}, ErrCallFull
	case m.Role.Person() && m.Role != RoleProvider && len(r.Waiting()) >= MaxWaiting:
		return Member{}, ErrWaitingRoomFull
	case m.Role == RoleDevice && len(r.list(func(x *Member) bool { return x.Role == RoleDevice }, nil)) >= MaxDevices:
		return Member{}, ErrTooManyDevices
	}
	m.admitted = false
	m.Media = Media{Audio: m.Role.Person(), Video: m.Role.Person()}
	m.CanShare = m.Role.Admits()
	n := &m
	r.members[m.ID] = n
	if m.Role == RoleProvider || m.Role == RoleDevice {
		r.admitLocked(n)
	}
	return *n, nil
}

// people counts the people (not devices) in the call.
func (r *Room) people() int {
	n := 0
	for _, m := range r.members {
		if m.admitted && m.Role.Person() {
			n++
		}
	}
	return n
}

func (r *Room) admitLocked(m *Member) {
	r.next++
	m.admitted = true
	m.order = r.next
}

// Admit lets a waiting person into the call. Only a provider or clinician in the call may admit; the
// call holds at most MaxPeople people (ErrCallFull), and one patient (ErrRoomFull).
func (r *Room) Admit(by, who string) (Member, error) {
	target, err := r.waitingTarget(by, who)
	if err != nil {
		return Member{}, err
	}
	if r.people() >= r.maxPeople {
		return Member{}, ErrCallFull
	}
	for _, m := range r.members {
		if m.admitted && m.Role == RolePatient && target.Role == RolePatient {
			return Member{}, ErrRoomFull
		}
	}
	r.admitLocked(target)
	return *target, nil
}

// Decline removes a waiting person from the room.
func (r *Room) Decline(by, who string) (Member, error) {
	target, err := r.waitingTarget(by, who)
	if err != nil {
		return Member{}, err
	}
	delete(r.members, who)
	return *target, nil
}

func (r *Room) waitingTarget(by, who string) (*Member, error) {
	if err := r.mayAdmit(by); err != nil {
		return nil, err
	}
	target, ok := r.members[who]
	if !ok || target.admitted {
		return nil, ErrUnknownPeer
	}
	return target, nil
}

// mayAdmit checks that by is a provider or clinician in the call.
func (r *Room) mayAdmit(by string) error {
	actor, ok := r.members[by]
	if !ok || !actor.Role.Admits() {
		return ErrForbidden
	}
	if !actor.admitted {
		return ErrNotAdmitted
	}
	return nil
}

// RemoveBy takes a person out of the room (waiting or in the call) at the word of a provider or
// clinician. The provider and devices cannot be removed (ErrForbidden), nor can one remove oneself
// (ErrUnknownPeer: leaving is for that).
func (r *Room) RemoveBy(by, who string) (Member, error) {
	if err := r.mayAdmit(by); err != nil {
		return Member{}, err
	}
	target, ok := r.members[who]
	if !ok || who == by {
		return Member{}, ErrUnknownPeer
	}
	if target.Role == RoleProvider || target.Role == RoleDevice {
		return Member{}, ErrForbidden
	}
	delete(r.members, who)
	return *target, nil
}

// SetMedia records a member's media state. Only a member in the call may say it, and only one who
// may share can say it shares a screen (ErrForbidden).
func (r *Room) SetMedia(id string, media Media) (Member, error) {
	m, ok := r.members[id]
	if !ok || !m.admitted {
		return Member{}, ErrNotAdmitted
	}
	if media.Screen && !m.CanShare {
		return Member{}, ErrForbidden
	}
	m.Media = media
	return *m, nil
}

// AllowShare lets a patient or guest in the call share a screen, or takes it back (which also ends
// a share under way), at the word of a provider or clinician. Providers and clinicians always may.
func (r *Room) AllowShare(by, who string, allowed bool) (Member, error) {
	if err := r.mayAdmit(by); err != nil {
		return Member{}, err
	}
	target, ok := r.members[who]
	if !ok || !target.admitted || !target.Role.Person() {
		return Member{}, ErrUnknownPeer
	}
	if target.Role.Admits() {
		return *target, nil
	}
	target.CanShare = allowed
	if !allowed {
		target.Media.Screen = false
	}
	return *target, nil
}

// Remove takes a member out of the room, whether waiting or admitted.
func (r *Room) Remove(id string) (Member, bool) {
	m, ok := r.members[id]
	if !ok {
		return Member{}, false
	}
	delete(r.members, id)
	return *m, true
}

// Member returns the member with the given id.
func (r *Room) Member(id string) (Member, bool) {
	m, ok := r.members[id]
	if !ok {
		return Member{}, false
	}
	return *m, true
}

// Connects reports whether members of roles a and b are connected in a call: everyone is, except
// two devices, which have nothing to say to each other.
func Connects(a, b Role) bool { return a != RoleDevice || b != RoleDevice }

// CanSignal reports whether from may send offers, answers and candidates to to: both must be admitted,
// and connected (Connects).
func (r *Room) CanSignal(from, to string) error {
	f, ok := r.members[from]
	if !ok || !f.admitted {
		return ErrNotAdmitted
	}
	t, ok := r.members[to]
	if !ok || !t.admitted || from == to || !Connects(f.Role, t.Role) {
		return ErrUnknownPeer
	}
	return nil
}

// Polite reports whether me is the polite side towards other in perfect negotiation: the member admitted
// first is polite, the newcomer makes the first offer.
func (r *Room) Polite(me, other string) bool {
	a, b := r.members[me], r.members[other]
	if a == nil || b == nil {
		return false
	}
	return a.order < b.order
}

// Admitted returns the members in the call, in admission order.
func (r *Room) Admitted() []Member {
	return r.list(func(m *Member) bool { return m.admitted }, func(a, b *Member) int { return a.order - b.order })
}

// Waiting returns the members in the waiting room, longest waiting first.
func (r *Room) Waiting() []Member {
	return r.list(func(m *Member) bool { return !m.admitted }, func(a, b *Member) int { return a.Since.Compare(b.Since) })
}

// Admitters returns the ids of the providers and clinicians in the call: those who see the waiting
// room and the patient's alerts.
func (r *Room) Admitters() []string {
	var ids []string
	for _, m := range r.Admitted() {
		if m.Role.Admits() {
			ids = append(ids, m.ID)
		}
	}
	return ids
}

// Present reports whether a person (not a device) is in the call.
func (r *Room) Present() bool {
	for _, m := range r.members {
		if m.admitted && m.Role.Person() {
			return true
		}
	}
	return false
}

// Len is the number of members, waiting or admitted.
func (r *Room) Len() int { return len(r.members) }

func (r *Room) list(keep func(*Member) bool, cmp func(a, b *Member) int) []Member {
	var ms []*Member
	for _, m := range r.members {
		if keep(m) {
			ms = append(ms, m)
		}
	}
	if cmp != nil {
		slices.SortFunc(ms, cmp)
	}
	out := make([]Member, len(ms))
	for i, m := range ms {
		out[i] = *m
	}
	return out
}

// RoomSnapshot is a Room's whole state, for keeping it outside the process: on another node, or
// across a restart. RestoreRoom makes the same Room again.
type RoomSnapshot struct {
	MaxPeople int              `json:"max_people"`
	Next      int              `json:"next"`
	Members   []MemberSnapshot `json:"members"`
}

// MemberSnapshot is a Member with what the room keeps of it privately.
type MemberSnapshot struct {
	Member
	Admitted bool `json:"admitted"`
	Order    int  `json:"order"`
}

// Snapshot returns the room's state; the room is not changed.
func (r *Room) Snapshot() RoomSnapshot {
	s := RoomSnapshot{MaxPeople: r.maxPeople, Next: r.next, Members: make([]MemberSnapshot, 0, len(r.members))}
	for _, m := range r.list(func(*Member) bool { return true }, func(a, b *Member) int { return a.Since.Compare(b.Since) }) {
		s.Members = append(s.Members, MemberSnapshot{Member: m, Admitted: m.admitted, Order: m.order})
	}
	return s
}

// RestoreRoom returns the Room whose Snapshot s is.
func RestoreRoom(s RoomSnapshot) *Room {
	r := NewRoom(s.MaxPeople)
	r.next = s.Next
	for _, ms := range s.Members {
		m := ms.Member
		m.admitted, m.order = ms.Admitted, ms.Order
		r.members[m.ID] = &m
	}
	return r
}
