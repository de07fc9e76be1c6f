-- `history_events.type` repeated what every payload says first (`{"type": ...}`, the event's
-- serde tag): nothing read it, and each event wrote it again (W1: ~95 bytes of WAL per
-- execution, W3 ~600). Query `payload->>'type'` instead.
ALTER TABLE history_events DROP COLUMN type;
