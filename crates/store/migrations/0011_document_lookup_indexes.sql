-- Lookups by document id alone.
--
-- Tenant tables key on (tenant_id, id), and the RLS predicate is
-- `tenant_id = current tenant OR bypass active`: the OR keeps the planner from using the
-- tenant-leading keys for a query that names only the id, so a transition scanned every
-- organisation's documents, lines and approvals (measured by `countersign-bench approvals`:
-- throughput fell from ~140 to ~75 transitions/s as documents went from 7k to 27k). RLS still
-- filters every row these indexes find.
create index documents_by_id on documents (id);
create index document_lines_by_document on document_lines (document_id, line_no);
create index document_approvals_by_document on document_approvals (document_id, round);
create index document_attachments_by_document on document_attachments (document_id);
create index idempotency_keys_by_key on idempotency_keys (principal, key);
