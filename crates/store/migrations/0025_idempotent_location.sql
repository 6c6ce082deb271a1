-- A replayed answer is the whole first answer: a create's Location header is kept with its
-- status and body (before, a retried POST /api/v1/documents got the body without Location).
alter table idempotency_keys add column location text check (location is null or length(location) between 1 and 500);
