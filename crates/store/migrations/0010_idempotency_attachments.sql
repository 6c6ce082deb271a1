-- Idempotency keys for document writes, and attachments by reference.
--
-- A client that retries a create or transition with the same Idempotency-Key gets the first
-- result back, never a second document. The key is claimed in the same transaction as the write
-- it guards: if the write fails, the claim rolls back with it (nothing half-applied, and the
-- retry runs again); a concurrent retry waits on the unique key until the first commits.
create table idempotency_keys (
    tenant_id     uuid not null references tenants (id),
    -- Keys are per caller: two people may pick the same key without seeing each other's result.
    principal     text not null check (length(principal) between 1 and 200),
    key           text not null check (length(key) between 1 and 200),
    -- What the key was first used for (method and route) and a hash of the request body: the
    -- same key for a different request is refused, not answered with the wrong result.
    route         text not null check (length(route) between 1 and 300),
    request_hash  bytea not null check (octet_length(request_hash) = 32),
    status        smallint check (status between 100 and 599),
    response      jsonb,
    created_at    timestamptz not null default now(),
    primary key (tenant_id, principal, key)
);
create index idempotency_keys_age on idempotency_keys (created_at);
select countersign_protect('idempotency_keys');

-- Files come later (per-tenant blob storage); a document already names its supporting papers.
create table document_attachments (
    tenant_id     uuid not null references tenants (id),
    document_id   uuid not null,
    id            uuid not null,
    name          text not null check (length(name) between 1 and 200),
    -- Where the file lives: a URI or a storage key (opaque to the approval workflow).
    reference     text not null check (length(reference) between 1 and 1000),
    media_type    text check (length(media_type) between 3 and 100),
    sha256        bytea check (octet_length(sha256) = 32),
    added_by      uuid not null references users (id),
    created_at    timestamptz not null default now(),
    primary key (tenant_id, document_id, id),
    foreign key (tenant_id, document_id) references documents (tenant_id, id)
);
select countersign_protect('document_attachments');
revoke delete, update on document_attachments from countersign_app;

-- Inbox queries: "waiting for me" by level, "raised by me" newest first, filters by date.
create index documents_inbox on documents (tenant_id, status, id desc);
create index documents_dates on documents (tenant_id, document_date);
