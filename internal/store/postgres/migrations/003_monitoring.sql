-- Remote patient monitoring: patients, their devices, the readings the devices send, thresholds and
-- alerts. Times are Unix milliseconds, as elsewhere; SQLite's REAL is DOUBLE PRECISION (8 bytes).
CREATE TABLE patients (
    id          TEXT PRIMARY KEY,
    provider_id TEXT NOT NULL REFERENCES providers(id),
    name        TEXT NOT NULL,
    birth_date  TEXT NOT NULL DEFAULT '',
    created_at  BIGINT NOT NULL
);
CREATE INDEX patients_provider ON patients(provider_id, name);

ALTER TABLE consultations ADD COLUMN patient_id TEXT REFERENCES patients(id);
CREATE INDEX consultations_patient ON consultations(patient_id) WHERE patient_id IS NOT NULL;

ALTER TABLE audit ADD COLUMN patient_id TEXT NOT NULL DEFAULT '';
CREATE INDEX audit_patient ON audit(patient_id, seq) WHERE patient_id <> '';

-- One-time enrollment codes, kept by their hash.
CREATE TABLE enrollments (
    code_hash   TEXT PRIMARY KEY,
    patient_id  TEXT NOT NULL REFERENCES patients(id),
    provider_id TEXT NOT NULL REFERENCES providers(id),
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    used_at     BIGINT
);

CREATE TABLE devices (
    id         TEXT PRIMARY KEY,
    patient_id TEXT NOT NULL REFERENCES patients(id),
    name       TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT,
    last_seen  BIGINT
);
CREATE INDEX devices_patient ON devices(patient_id);

-- Each upload a device made, by its batch id, with the answer it got: a batch sent again is answered
-- the same and stores nothing.
CREATE TABLE batches (
    device_id   TEXT NOT NULL REFERENCES devices(id),
    batch_id    TEXT NOT NULL,
    body_hash   TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    result      TEXT NOT NULL CHECK ((result::json) IS NOT NULL),
    PRIMARY KEY (device_id, batch_id)
);

CREATE TABLE observations (
    id           TEXT PRIMARY KEY,
    patient_id   TEXT NOT NULL REFERENCES patients(id),
    device_id    TEXT NOT NULL REFERENCES devices(id),
    code         TEXT NOT NULL,
    effective_at BIGINT NOT NULL,
    -- a single value, or NULL for a panel or a waveform
    value        DOUBLE PRECISION,
    unit         TEXT NOT NULL DEFAULT '',
    -- a panel's components, a JSON array of {"code","value","unit"}
    components   TEXT,
    -- a waveform: its samples as a JSON array, and their period
    samples      TEXT,
    period_ms    DOUBLE PRECISION,
    device_name  TEXT NOT NULL DEFAULT '',
    received_at  BIGINT NOT NULL
);
CREATE INDEX observations_patient ON observations(patient_id, code, effective_at);
CREATE INDEX observations_patient_time ON observations(patient_id, effective_at);

-- A patient's thresholds where the provider changed them; the defaults apply to the other codes.
CREATE TABLE thresholds (
    patient_id TEXT NOT NULL REFERENCES patients(id),
    code       TEXT NOT NULL,
    low        DOUBLE PRECISION,
    high       DOUBLE PRECISION,
    PRIMARY KEY (patient_id, code)
);

CREATE TABLE alerts (
    id             TEXT PRIMARY KEY,
    patient_id     TEXT NOT NULL REFERENCES patients(id),
    observation_id TEXT NOT NULL REFERENCES observations(id),
    code           TEXT NOT NULL,
    value          DOUBLE PRECISION NOT NULL,
    unit           TEXT NOT NULL,
    bound          TEXT NOT NULL CHECK (bound IN ('low', 'high')),
    limit_value    DOUBLE PRECISION NOT NULL,
    at             BIGINT NOT NULL,
    created_at     BIGINT NOT NULL
);
CREATE INDEX alerts_patient ON alerts(patient_id, created_at);

-- Where each of a patient's signals stood at its latest reading: '' within the thresholds, 'low' or
-- 'high'. An alert is raised when a reading crosses out, not for every reading that stays out.
CREATE TABLE alert_states (
    patient_id TEXT NOT NULL REFERENCES patients(id),
    code       TEXT NOT NULL,
    bound      TEXT NOT NULL CHECK (bound IN ('', 'low', 'high')),
    PRIMARY KEY (patient_id, code)
);
