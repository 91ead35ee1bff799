-- A consultation's saved chat transcript: at most one, replaced by each save. Text only, never files.
CREATE TABLE transcripts (
    consultation_id TEXT PRIMARY KEY REFERENCES consultations(id),
    saved_at        BIGINT NOT NULL,
    saved_by        TEXT NOT NULL,
    -- a JSON array of {"from","name","text","at"}, in the order saved; "at" is RFC 3339 in UTC. Kept
    -- as the text written (json checks it, jsonb would rewrite it), as in SQLite.
    messages        TEXT NOT NULL CHECK (json_typeof(messages::json) = 'array')
);
