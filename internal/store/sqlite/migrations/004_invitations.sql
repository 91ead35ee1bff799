-- The people a provider invites into a consultation besides the patient: interpreters, family
-- members, caregivers (guest) and other clinicians (clinician). The link of an invitation names it;
-- revoking it stops the link.
CREATE TABLE invitations (
    id              TEXT PRIMARY KEY,
    consultation_id TEXT NOT NULL REFERENCES consultations(id),
    role            TEXT NOT NULL CHECK (role IN ('guest', 'clinician')),
    name            TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 400),
    created_at      INTEGER NOT NULL,
    revoked_at      INTEGER
);
CREATE INDEX invitations_by_consultation ON invitations (consultation_id, created_at);

-- Set when a provider or clinician removed the patient from the call: the patient link stops.
ALTER TABLE consultations ADD COLUMN patient_removed_at INTEGER;
