-- `tasks_ready` serves claims (`status = 'ready'` on a runtime and queue, oldest first) and
-- `tasks_lease` the sweeper's earliest lease expiry (`status = 'leased'`); each indexed every
-- task whatever its status, so a task leased as it was inserted (eager dispatch) gave
-- `tasks_ready` an entry no claim reads, and a ready one `tasks_lease` one no sweep reads, and
-- a claim wrote both again. Each now holds only the tasks of its status.
DROP INDEX tasks_ready;
CREATE INDEX tasks_ready ON tasks (runtime, queue, visible_at) WHERE status = 'ready';
DROP INDEX tasks_lease;
CREATE INDEX tasks_lease ON tasks (lease_expires_at) WHERE status = 'leased';
