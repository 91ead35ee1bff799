-- Connection tests made before a visit (kind precall) and each person's summary of a call's quality
-- at its end (kind call), kept with the consultation for support. Who reported comes from their link;
-- figures is the measurements as JSON, without any IP address.
CREATE TABLE quality_reports (
    id              TEXT PRIMARY KEY,
    consultation_id TEXT NOT NULL REFERENCES consultations(id),
    kind            TEXT NOT NULL CHECK (kind IN ('precall', 'call')),
    role            TEXT NOT NULL,
    name            TEXT NOT NULL CHECK (length(name) <= 400),
    reporter        TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    figures         TEXT NOT NULL CHECK (json_valid(figures) AND length(figures) <= 16384)
);
CREATE INDEX quality_reports_by_consultation ON quality_reports (consultation_id, created_at);
