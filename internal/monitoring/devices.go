package monitoring

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/telemed/telemed/errcode"
	"github.com/telemed/telemed/internal/auth"
	"github.com/telemed/telemed/internal/consult"
	"github.com/telemed/telemed/internal/monitor"
	"github.com/telemed/telemed/internal/store"
)

// EnrollmentView is a new enrollment code. Its JSON form is part of the public API.
type EnrollmentView struct {
	PatientID string    `json:"patient_id"`
	Code      string    `json:"code"`
	Link      string    `json:"link"`
	ExpiresAt time.Time `json:"expires_at"`
}

// enrollmentAlphabet leaves out letters and digits that people confuse (0/O, 1/I/L) when they type a
// code from one screen into another.
const enrollmentAlphabet = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"

// CreateEnrollment creates a one-time code that enrolls a device to the provider's patient.
func (s *Service) CreateEnrollment(ctx context.Context, p consult.Provider, actor, patientID string) (EnrollmentView, error) {
	pt, err := s.ownPatient(ctx, p, patientID)
	if err != nil {
		return EnrollmentView{}, err
	}
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand failed: " + err.Error())
	}
	var code strings.Builder
	for i, v := range b {
		if i == 4 {
			code.WriteByte('-')
		}
		code.WriteByte(enrollmentAlphabet[int(v)%len(enrollmentAlphabet)])
	}
	now := s.now().UTC().Truncate(time.Second)
	e := monitor.Enrollment{CodeHash: auth.HashToken(code.String()), PatientID: pt.ID, ProviderID: p.ID, CreatedAt: now,
		ExpiresAt: now.Add(EnrollmentTTL)}
	if err := s.store.CreateEnrollment(ctx, e); err != nil {
		return EnrollmentView{}, fmt.Errorf("create enrollment for %s: %w", pt.ID, err)
	}
	s.audit.Record(ctx, consult.AuditEvent{Actor: actor, Action: consult.AuditDeviceEnrollment, PatientID: pt.ID,
		Detail: "expires " + e.ExpiresAt.Format(time.RFC3339)})
	return EnrollmentView{PatientID: pt.ID, Code: code.String(), Link: s.baseURL + "/enroll#code=" + code.String(), ExpiresAt: e.ExpiresAt}, nil
}

// normalizeCode accepts a code as people type it: any case, with or without the dash or spaces.
func normalizeCode(code string) string {
	var b strings.Builder
	for _, r := range strings.ToUpper(code) {
		if strings.ContainsRune(enrollmentAlphabet, r) {
			b.WriteRune(r)
		}
	}
	c := b.String()
	if len(c) != 8 {
		return ""
	}
	return c[:4] + "-" + c[4:]
}

// DeviceView is a device as the API shows it.
type DeviceView struct {
	ID        string     `json:"id"`
	PatientID string     `json:"patient_id"`
	Name      string     `json:"name"`
	CreatedAt time.Time  `json:"created_at"`
	LastSeen  *time.Time `json:"last_seen"`
	RevokedAt *time.Time `json:"revoked_at"`
}

func deviceView(d monitor.Device) DeviceView {
	return DeviceView{ID: d.ID, PatientID: d.PatientID, Name: d.Name, CreatedAt: d.CreatedAt, LastSeen: d.LastSeen, RevokedAt: d.RevokedAt}
}

// EnrolledDevice is the answer to an enrollment: the device and its token, shown this once.
type EnrolledDevice struct {
	Device DeviceView `json:"device"`
	Token  string     `json:"token"`
}

// EnrollDevice redeems an enrollment code for a device token. from is the client's address, under
// which failed attempts are counted (the zero Addr when it is unknown: all such callers share one
// allowance).
func (s *Service) EnrollDevice(ctx context.Context, code, name string, from netip.Addr) (EnrolledDevice, error) {
	name = strings.TrimSpace(name)
	if name == "" {
		name = "Device"
	}
	if utf8.RuneCountInString(name) > MaxDeviceName {
		return EnrolledDevice{}, errcode.Errorf(errcode.BadField, "name must be at most %d characters", MaxDeviceName)
	}
	norm := normalizeCode(code)
	if norm == "" {
		s.enrollFailures.fail(from, s.now())
		return EnrolledDevice{}, errcode.Errorf(errcode.BadField, "code must be the 8-character enrollment code the provider created, such as K7QF-M2XD")
	}
	if err := s.enrollFailures.check(from, s.now()); err != nil {
		return EnrolledDevice{}, err
	}
	token, hash := auth.NewToken("td_")
	d := monitor.Device{ID: auth.NewID("d_"), Name: name, TokenHash: hash, CreatedAt: s.now().UTC().Truncate(time.Millisecond)}
	err := s.store.RedeemEnrollment(ctx, auth.HashToken(norm), s.now(), &d)
	if errors.Is(err, store.ErrNotFound) {
		s.enrollFailures.fail(from, s.now())
		return EnrolledDevice{}, errcode.Errorf(errcode.BadToken, "this enrollment code is unknown, has been used, or has expired: ask the provider for a new one")
	}
	if err != nil {
		return EnrolledDevice{}, fmt.Errorf("enroll device: %w", err)
	}
	s.audit.Record(ctx, consult.AuditEvent{Actor: d.ID, Action: consult.AuditDeviceEnrolled, PatientID: d.PatientID, Detail: name})
	return EnrolledDevice{Device: deviceView(d), Token: token}, nil
}

var errDeviceToken = &errcode.Error{Code: errcode.Unauthenticated, Message: "the device token is unknown or has been revoked: enroll the device again with a new code"}

// DeviceByToken returns the unrevoked device a token belongs to.
func (s *Service) DeviceByToken(ctx context.Context, token string) (monitor.Device, error) {
	if !strings.HasPrefix(token, "td_") || len(token) > 100 {
		return monitor.Device{}, errDeviceToken
	}
	d, err := s.store.DeviceByToken(ctx, auth.HashToken(token))
	if errors.Is(err, store.ErrNotFound) || (err == nil && d.RevokedAt != nil) {
		return monitor.Device{}, errDeviceToken
	}
	if err != nil {
		return monitor.Device{}, fmt.Errorf("device token: %w", err)
	}
	return d, nil
}

// ListDevices returns the devices enrolled to the provider's patient, revoked ones included.
func (s *Service) ListDevices(ctx context.Context, p consult.Provider, patientID string) ([]DeviceView, error) {
	if _, err := s.ownPatient(ctx, p, patientID); err != nil {
		return nil, err
	}
	ds, err := s.store.ListDevices(ctx, patientID)
	if err != nil {
		return nil, fmt.Errorf("devices of %s: %w", patientID, err)
	}
	out := make([]DeviceView, 0, len(ds))
	for _, d := range ds {
		out = append(out, deviceView(d))
	}
	return out, nil
}

// RevokeDevice revokes a device of one of the provider's patients: its token stops working at once.
func (s *Service) RevokeDevice(ctx context.Context, p consult.Provider, actor, deviceID string) (DeviceView, error) {
	d, err := s.store.Device(ctx, deviceID)
	if errors.Is(err, store.ErrNotFound) {
		return DeviceView{}, errcode.Errorf(errcode.NotFound, "no device %s", errcode.Quote(deviceID))
	}
	if err != nil {
		return DeviceView{}, fmt.Errorf("device %s: %w", deviceID, err)
	}
	if _, err := s.ownPatient(ctx, p, d.PatientID); err != nil {
		return DeviceView{}, errcode.Errorf(errcode.NotFound, "no device %s", errcode.Quote(deviceID))
	}
	if err := s.store.RevokeDevice(ctx, d.ID, s.now()); err != nil {
		return DeviceView{}, fmt.Errorf("revoke device %s: %w", d.ID, err)
	}
	s.audit.Record(ctx, consult.AuditEvent{Actor: actor, Action: consult.AuditDeviceRevoked, PatientID: d.PatientID, Detail: d.ID + " " + d.Name})
	d, err = s.store.Device(ctx, d.ID)
	return deviceView(d), err
}

// DeviceConsultation is a consultation a device may join now.
type DeviceConsultation struct {
	ID    string `json:"id"`
	Title string `json:"title"`
	Link  string `json:"link"`
}

// DeviceSession is what a device learns when it asks the server: itself, and the consultation of its
// patient under way, if any.
type DeviceSession struct {
	Device       DeviceView          `json:"device"`
	Consultation *DeviceConsultation `json:"consultation"`
}

// DeviceSession returns the device and the newest open consultation of its patient that present
// reports someone is in, with a link that joins it as a device.
func (s *Service) DeviceSession(ctx context.Context, d monitor.Device, present func(consultationID string) bool) (DeviceSession, error) {
	out := DeviceSession{Device: deviceView(d)}
	cs, err := s.store.OpenConsultationsOfPatient(ctx, d.PatientID, s.now())
	if err != nil {
		return out, fmt.Errorf("consultations of %s: %w", d.PatientID, err)
	}
	for _, c := range cs {
		if present != nil && !present(c.ID) {
			continue
		}
		link := s.links.DeviceURL(c, d.ID, s.now().Add(DeviceLinkTTL))
		out.Consultation = &DeviceConsultation{ID: c.ID, Title: c.Title, Link: link}
		break
	}
	return out, nil
}
