-- Vendor and client portals (issue 16): relations, their people, documents addressed to them,
-- and single-use portal links.
--
-- An organisation keeps relations with outside companies (kind vendor | client). Their people
-- are ordinary members with the role `vendor` or `client` and the relation's id on the
-- membership. Relation-owned rows carry a third isolation dimension, enforced here by a
-- RESTRICTIVE policy `relation_isolation` (ANDed with the tenant policies): a row is visible
-- only when the platform bypass is active, or the transaction's relation scope is 'internal'
-- (the organisation's own members), or the row's relation equals the scope. With no scope, the
-- scope 'none' or anything malformed, relation tables show nothing (deny by default).
--
-- The scope is set only by store::TenantTx::begin_relation, which derives it IN THE DATABASE
-- from the caller's own active membership (countersign_relation_scope), like the partner scope
-- of migration 0021: the application passes the authenticated user id, never a relation id.
--
-- Documents and their attachments are older than relations and are read by every document
-- route under a plain tenant transaction (no relation scope). They get a RESTRICTIVE policy
-- `relation_reach` that leaves those transactions alone (scope unset or 'internal') and shows a
-- relation-scoped transaction only the documents addressed to its relation, and of their
-- attachments only those that are not another relation's uploads.

create function countersign_relation_scope_text() returns text
    language sql stable
as $$ select nullif(current_setting('app.relation_scope', true), '') $$;

-- The relation id in force, or NULL (for 'internal', 'none', unset, or anything malformed).
create function countersign_relation_scope_id() returns uuid
    language sql stable
as $$
    select case when s ~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' then s::uuid end
      from (select countersign_relation_scope_text() as s) x
$$;

create function countersign_protect_relation(tbl regclass, col name) returns void
    language plpgsql
as $$
begin
    execute format(
        'create policy relation_isolation on %s as restrictive for all '
        'using ((select countersign_bypass_active()) or (select countersign_relation_scope_text()) = ''internal'' '
        'or %I = (select countersign_relation_scope_id())) '
        'with check ((select countersign_bypass_active()) or (select countersign_relation_scope_text()) = ''internal'' '
        'or %I = (select countersign_relation_scope_id()))', tbl, col, col);
end
$$;

create table relations (
    tenant_id    uuid not null references tenants (id),
    id           uuid not null,
    kind         text not null check (kind in ('vendor', 'client')),
    company_name text not null check (length(company_name) between 1 and 200),
    status       text not null default 'active' check (status in ('active', 'ended')),
    created_by   uuid not null references users (id),
    created_at   timestamptz not null default now(),
    ended_at     timestamptz,
    primary key (tenant_id, id),
    -- Referenced with the kind, so a membership's role is its relation's kind.
    unique (tenant_id, kind, id),
    check ((status = 'ended') = (ended_at is not null))
);
select countersign_protect('relations');
select countersign_protect_relation('relations', 'id');
revoke delete on relations from countersign_app;

-- A relation's people: members whose role is the relation's kind (the composite key makes a
-- vendor membership point only at a vendor relation, and a relation id imply that role).
alter table memberships add column relation_id uuid;
alter table memberships add constraint memberships_relation_fk
    foreign key (tenant_id, role, relation_id) references relations (tenant_id, kind, id);
alter table memberships add constraint memberships_relation_role
    check (relation_id is null or role in ('vendor', 'client'));
-- Lets portal links name a membership together with its relation.
alter table memberships add constraint memberships_relation_key unique (tenant_id, id, relation_id);

-- The scope of `p_user`'s active membership in the current tenant: 'internal' for the
-- organisation's own roles, the relation id for a relation's person whose relation is active,
-- 'none' otherwise (no membership, ended, expired, partner roles, a relation that ended).
-- Runs as the invoker: it sees only the current tenant's memberships (RLS); it reads relations
-- as the definer would not: the relation row is checked with the scope it is about to grant.
create function countersign_relation_scope(p_user uuid) returns text
    language sql stable
as $$
    select coalesce((
        select case when m.role in ('owner', 'admin', 'staff', 'hod', 'finance', 'md', 'auditor') then 'internal'
                    when m.role in ('vendor', 'client') and m.relation_id is not null then m.relation_id::text
                    else 'none' end
          from memberships m
         where m.user_id = p_user and m.status = 'active' and m.deleted_at is null
           and m.valid_from <= now() and (m.valid_until is null or m.valid_until > now())
    ), 'none')
$$;

-- Documents addressed to a relation (a purchase order to a vendor, an invoice to a client).
create table relation_documents (
    tenant_id    uuid not null references tenants (id),
    relation_id  uuid not null,
    document_id  uuid not null,
    addressed_by uuid not null references users (id),
    created_at   timestamptz not null default now(),
    primary key (tenant_id, relation_id, document_id),
    foreign key (tenant_id, relation_id) references relations (tenant_id, id),
    foreign key (tenant_id, document_id) references documents (tenant_id, id)
);
create index relation_documents_document on relation_documents (tenant_id, document_id);
select countersign_protect('relation_documents');
select countersign_protect_relation('relation_documents', 'relation_id');
revoke update on relation_documents from countersign_app;

-- Portal links: single use, time-limited, revocable. Only the SHA-256 of the token is stored.
-- The link names a membership of its relation (composite key): it can open a session for that
-- person only, in that relation only.
create table portal_links (
    tenant_id     uuid not null references tenants (id),
    id            uuid not null,
    relation_id   uuid not null,
    membership_id uuid not null,
    token_hash    bytea not null check (octet_length(token_hash) = 32),
    expires_at    timestamptz not null,
    created_by    uuid not null references users (id),
    created_at    timestamptz not null default now(),
    consumed_at   timestamptz,
    session_id    uuid,
    revoked_at    timestamptz,
    revoked_by    uuid references users (id),
    primary key (tenant_id, id),
    unique (token_hash),
    foreign key (tenant_id, relation_id) references relations (tenant_id, id),
    foreign key (tenant_id, membership_id, relation_id) references memberships (tenant_id, id, relation_id),
    foreign key (tenant_id, session_id) references sessions (tenant_id, id),
    check (expires_at > created_at),
    check (session_id is null or consumed_at is not null)
);
create index portal_links_relation on portal_links (tenant_id, relation_id, created_at desc);
select countersign_protect('portal_links');
select countersign_protect_relation('portal_links', 'relation_id');
revoke delete on portal_links from countersign_app;

-- A relation's own people read their relation's rows but never write them: relations,
-- addressings and links are the organisation's (or, for consuming a link, the sign-in's, which
-- runs on the organisation's side). Restrictive, so ANDed with relation_isolation.
create function countersign_protect_relation_writes(tbl regclass) returns void
    language plpgsql
as $$
begin
    execute format(
        'create policy relation_writes_insert on %s as restrictive for insert '
        'with check ((select countersign_bypass_active()) or (select countersign_relation_scope_text()) = ''internal'')', tbl);
    execute format(
        'create policy relation_writes_update on %s as restrictive for update '
        'using ((select countersign_bypass_active()) or (select countersign_relation_scope_text()) = ''internal'') '
        'with check ((select countersign_bypass_active()) or (select countersign_relation_scope_text()) = ''internal'')', tbl);
    execute format(
        'create policy relation_writes_delete on %s as restrictive for delete '
        'using ((select countersign_bypass_active()) or (select countersign_relation_scope_text()) = ''internal'')', tbl);
end
$$;
select countersign_protect_relation_writes('relations');
select countersign_protect_relation_writes('relation_documents');
select countersign_protect_relation_writes('portal_links');

-- An outside party's upload names its relation: no other relation ever sees it.
alter table document_attachments add column relation_id uuid;
alter table document_attachments add constraint document_attachments_relation_fk
    foreign key (tenant_id, relation_id) references relations (tenant_id, id);

-- The reach of a relation-scoped transaction into the document tables.
create policy relation_reach on documents as restrictive for all
    using ((select countersign_bypass_active()) or (select countersign_relation_scope_text()) is null
           or (select countersign_relation_scope_text()) = 'internal'
           or exists (select 1 from relation_documents rd
                       where rd.tenant_id = documents.tenant_id and rd.document_id = documents.id
                         and rd.relation_id = (select countersign_relation_scope_id())))
    with check ((select countersign_bypass_active()) or (select countersign_relation_scope_text()) is null
           or (select countersign_relation_scope_text()) = 'internal');

create policy relation_reach on document_attachments as restrictive for all
    using ((select countersign_bypass_active()) or (select countersign_relation_scope_text()) is null
           or (select countersign_relation_scope_text()) = 'internal'
           or ((relation_id is null or relation_id = (select countersign_relation_scope_id()))
               and exists (select 1 from relation_documents rd
                            where rd.tenant_id = document_attachments.tenant_id
                              and rd.document_id = document_attachments.document_id
                              and rd.relation_id = (select countersign_relation_scope_id()))))
    with check ((select countersign_bypass_active()) or (select countersign_relation_scope_text()) is null
           or (select countersign_relation_scope_text()) = 'internal'
           or (relation_id = (select countersign_relation_scope_id())
               and exists (select 1 from relation_documents rd
                            where rd.tenant_id = document_attachments.tenant_id
                              and rd.document_id = document_attachments.document_id
                              and rd.relation_id = (select countersign_relation_scope_id()))));
