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

	admitted bool
	order    int // admission order; the earlier admitted member of a pair is the polite one
}

// Admitted reports whether the member is in the call rather than the waiting room.
func (m Member) Admitted() bool { return m.admitted }

// Room is the waiting room and call of one consultation. It is a plain state machine: it does no I/O
// and is not safe for concurrent use; its owner serialises access.
type Room struct {
	members map[string]*Member
	next    int
}

// NewRoom returns an empty room.
func NewRoom() *Room { return &Room{members: make(map[string]*Member)} }

// MaxWaiting is how many may wait at once. A consultation is one to one; the bound keeps anyone who
// holds the patient link from filling the server, and the provider's screen, with arrivals.
const MaxWaiting = 20

// MaxDevices is how many of the patient's devices may be in a call at once.
const MaxDevices = 8

// Add puts a new member in the room. Providers and the patient's devices (which hold a link only the
// server gives them) go straight into the call; patients wait to be admitted, unless MaxWaiting already
// wait (ErrWaitingRoomFull).
func (r *Room) Add(m Member) (Member, error) {
	if m.Role == RolePatient && len(r.Waiting()) >= MaxWaiting {
		return Member{}, ErrWaitingRoomFull
	}
	if m.Role == RoleDevice && len(r.list(func(x *Member) bool { return x.Role == RoleDevice }, nil)) >= MaxDevices {
		return Member{}, ErrTooManyDevices
	}
	m.admitted = false
	n := &m
	r.members[m.ID] = n
	if m.Role == RoleProvider || m.Role == RoleDevice {
		r.admitLocked(n)
	}
	return *n, nil
}

func (r *Room) admitLocked(m *Member) {
	r.next++
	m.admitted = true
	m.order = r.next
}

// Admit lets a waiting patient into the call. Only a provider in the room may admit, and only one patient
// may be in the call at a time.
func (r *Room) Admit(by, who string) (Member, error) {
	target, err := r.waitingTarget(by, who)
	if err != nil {
		return Member{}, err
	}
	for _, m := range r.members {
		if m.admitted && m.Role == RolePatient {
			return Member{}, ErrRoomFull
		}
	}
	r.admitLocked(target)
	return *target, nil
}

// Decline removes a waiting patient from the room.
func (r *Room) Decline(by, who string) (Member, error) {
	target, err := r.waitingTarget(by, who)
	if err != nil {
		return Member{}, err
	}
	delete(r.members, who)
	return *target, nil
}

func (r *Room) waitingTarget(by, who string) (*Member, error) {
	actor, ok := r.members[by]
	if !ok || actor.Role != RoleProvider {
		return nil, ErrForbidden
	}
	target, ok := r.members[who]
	if !ok || target.admitted {
		return nil, ErrUnknownPeer
	}
	return target, nil
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

// Providers returns the ids of the providers in the room.
func (r *Room) Providers() []string {
	var ids []string
	for _, m := range r.Admitted() {
		if m.Role == RoleProvider {
			ids = append(ids, m.ID)
		}
	}
	return ids
}

// Present reports whether a person (provider or patient, not a device) is in the call.
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
