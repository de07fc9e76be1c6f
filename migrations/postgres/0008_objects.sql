-- Checkpoints as stored objects. A checkpoint too large to sit inline in a history event or a
-- task row is written once, content-addressed, in the transaction of the progress or outcome
-- that produced it; events, states and task rows hold `{"$object": id}` instead. An object is a
-- whole value (`base` NULL) or a patch over the object `base` (what a step added), so a growing
-- transcript stores each part once. Rows are never updated; equal (base, data) share one row.
CREATE TABLE objects (
    -- 'sha256:' and the hex SHA-256 of base (or nothing), a newline, and data.
    id         TEXT PRIMARY KEY,
    base       TEXT,
    -- JSON text: the value, or the patch over base's value.
    data       TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- The output seq of the last chunk the task's checkpoint covers: the chunks after it, from an
-- attempt that was interrupted (or handed back), are emitted again by the attempt that resumes
-- from that checkpoint.
ALTER TABLE tasks ADD COLUMN checkpoint_seq BIGINT NOT NULL DEFAULT 0;
-- A chunk of an interrupted attempt after its last checkpoint, marked when the attempt that
-- resumes from that checkpoint (and emits it again) is claimed: readers skip it unless they ask
-- for every chunk.
ALTER TABLE output_chunks ADD COLUMN superseded BOOLEAN NOT NULL DEFAULT FALSE;
