-- Worker policies (issue 15). A worker advertises its policy in its polls: the `workers` row
-- keeps the newest (JSON, NULL for a worker that advertises none and so admits everything), for
-- `cairn worker list`, for `cairn exec get` to say why a task waits, and for CreateAgent and
-- UpdateAgent to warn when no connected worker would admit an agent.
ALTER TABLE workers ADD COLUMN policy TEXT;
-- The fingerprints of the policies that refused a task, as `|fp1|fp2|`: a claim skips a task its
-- poll's policy refused, so a refusing worker never takes it again and others still can.
ALTER TABLE tasks ADD COLUMN refused_by TEXT NOT NULL DEFAULT '';
