-- Files (issue 16): encrypted blobs per organisation, the data keys that seal them, and
-- attachments that point at blobs instead of naming a file by reference.
--
-- What lies in object storage is ciphertext only (crates/files): each organisation has AES-256
-- data keys, stored here sealed under a master key that lives in a file outside the database, so
-- neither a database dump nor the bucket alone opens a file. Object keys are made from ids only
-- (`tenants/<tenant>/blobs/<uuid>`); the original name lives here, sanitised.

-- An organisation's data keys, newest version used for new blobs. Rotating the master key
-- re-seals `wrapped` (the data key itself does not change, so blobs need no rewrite).
create table blob_keys (
    tenant_id      uuid not null references tenants (id),
    id             uuid not null,
    -- Named in every blob's header; 1 for an organisation's first key.
    version        integer not null check (version between 1 and 1000000),
    -- AES-256-GCM of the 32-byte data key under the master key: 12-byte nonce ‖ ciphertext ‖ tag.
    wrapped        bytea not null check (octet_length(wrapped) = 12 + 32 + 16),
    -- The master key that sealed it: first 8 bytes of SHA-256 of that key, hex.
    master_key_id  text not null check (master_key_id ~ '^[0-9a-f]{16}$'),
    created_at     timestamptz not null default now(),
    rewrapped_at   timestamptz,
    primary key (tenant_id, id),
    unique (tenant_id, version)
);
select countersign_protect('blob_keys');
revoke delete, update on blob_keys from countersign_app;
grant update (wrapped, master_key_id, rewrapped_at) on blob_keys to countersign_app;

-- One stored file. Never deleted by the application: soft delete (deleted_at/by) may be undone
-- during retention; purge removes the object and stamps purged_at, keeping the row (and the
-- SHA-256 the ledger names).
create table blobs (
    tenant_id     uuid not null references tenants (id),
    id            uuid not null,
    key_id        uuid not null,
    size_bytes    bigint not null check (size_bytes between 0 and 1099511627776),
    -- SHA-256 of the plaintext, computed while it streamed in.
    sha256        bytea not null check (octet_length(sha256) = 32),
    -- Sniffed from the content against the allow list, never taken from the client.
    media_type    text not null check (media_type in (
        'application/pdf', 'image/png', 'image/jpeg', 'image/gif', 'image/webp',
        'application/vnd.openxmlformats-officedocument.wordprocessingml.document',
        'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet',
        'application/vnd.openxmlformats-officedocument.presentationml.presentation',
        'application/vnd.oasis.opendocument.text',
        'application/vnd.oasis.opendocument.spreadsheet',
        'text/csv', 'text/plain')),
    -- The client's file name, sanitised (no separators or control characters, at most 200).
    name          text not null check (length(name) between 1 and 200 and name !~ '[/\\[:cntrl:]]'),
    created_by    uuid not null references users (id),
    created_at    timestamptz not null default now(),
    deleted_at    timestamptz,
    deleted_by    uuid references users (id),
    purged_at     timestamptz,
    primary key (tenant_id, id),
    foreign key (tenant_id, key_id) references blob_keys (tenant_id, id),
    constraint blobs_deleted check ((deleted_at is null) = (deleted_by is null)),
    constraint blobs_purged_after_delete check (purged_at is null or deleted_at is not null)
);
create index blobs_purgeable on blobs (deleted_at) where deleted_at is not null and purged_at is null;
select countersign_protect('blobs');
revoke delete, update on blobs from countersign_app;
grant update (deleted_at, deleted_by, purged_at) on blobs to countersign_app;

-- Attachments: today's by-reference rows stay valid (blob_id null); new ones point at a blob of
-- the same organisation (composite key). Who outside the organisation may see one is its
-- visibility, decided by the policy engine (crates/authz/policies/files.cedar).
alter table document_attachments
    add column blob_id uuid,
    add column visibility text not null default 'internal'
        check (visibility in ('internal', 'vendor', 'client', 'partner')),
    add constraint document_attachments_blob foreign key (tenant_id, blob_id) references blobs (tenant_id, id);
create unique index document_attachments_one_per_blob on document_attachments (tenant_id, blob_id)
    where blob_id is not null;
grant update (visibility) on document_attachments to countersign_app;
