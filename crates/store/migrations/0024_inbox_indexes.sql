-- The inbox reads one status at a time in id order (crates/approvals/src/inbox.rs: one arm per
-- status the caller acts on, each `order by id desc limit n`, merged). Its statement names
-- `tenant_id = $tenant` itself, because the tenant policy is ORed with the bypass policy and so
-- is never an index condition (see 0011, 0018). These indexes let each arm walk exactly its rows
-- in id order and stop after n:
--   * "submitted in my department" (heads of department): (tenant, status, department, id desc),
--     which also serves everything documents_status did, so that one goes;
--   * "queried, raised by me" (everyone): (tenant, status, raiser, id desc).
-- Before, a head of department's inbox over 100,000 documents sorted every queried and submitted
-- document of the organisation (~22,000 rows) per page: p99 ~210 ms at 8 clients.
create index documents_status_department on documents (tenant_id, status, department_id, id desc);
create index documents_status_raiser on documents (tenant_id, status, raised_by, id desc);
drop index documents_status;
