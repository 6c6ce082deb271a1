-- Approvals hardening: MD thresholds per currency, closed fiscal periods enforced by the
-- database, documents that carry their discussion, attachments that can be withdrawn.

-- --- MD thresholds per currency -------------------------------------------------------------
-- Above `threshold_minor` (minor units of `currency`) the MD approves after finance. A document
-- in a currency without a row goes to the MD: forgetting a currency is never a way round the MD.
create table md_thresholds (
    tenant_id        uuid not null references tenants (id),
    currency         text not null check (currency ~ '^[A-Z]{3}$'),
    threshold_minor  bigint not null check (threshold_minor between 0 and 1000000000000000),
    updated_at       timestamptz not null default now(),
    primary key (tenant_id, currency)
);
select countersign_protect('md_thresholds');

-- The old single threshold had no currency, and organisations have no default currency to read
-- it in: kept, it would be the hole this migration closes (a EUR amount applied to GBP). It is
-- dropped, so every document goes to the MD until an admin sets thresholds per currency
-- (fail safe; `PUT /api/v1/settings/approvals`).
alter table tenants drop column md_threshold_minor;

-- --- Discussion ------------------------------------------------------------------------------
-- The question a query asked, the raiser's answer, and the notes of other transitions, visible on
-- the document. Append-only.
create table document_notes (
    tenant_id    uuid not null references tenants (id),
    document_id  uuid not null,
    id           uuid not null,
    author       uuid not null references users (id),
    author_role  text not null check (length(author_role) between 1 and 64),
    kind         text not null check (kind in ('query', 'answer', 'note')),
    body         text not null check (length(body) between 1 and 2000),
    created_at   timestamptz not null default now(),
    primary key (tenant_id, document_id, id),
    foreign key (tenant_id, document_id) references documents (tenant_id, id)
);
create index document_notes_by_document on document_notes (document_id, created_at);
select countersign_protect('document_notes');
revoke update, delete on document_notes from countersign_app;

-- Earlier notes are in the ledger only (as the reason of the transition's event): copied here so
-- existing documents show their discussion too. The ledger itself is not touched.
insert into document_notes (tenant_id, document_id, id, author, author_role, kind, body, created_at)
select e.tenant_id, d.id, gen_random_uuid(), u.id, coalesce(e.actor_role, 'unknown'),
       case when e.action like '%.queried' then 'query' when e.action like '%.answered' then 'answer' else 'note' end,
       e.reason, e.occurred_at
  from audit_events e
  join documents d on d.tenant_id = e.tenant_id and d.id::text = e.entity_id
  join users u on u.id::text = e.actor_id
 where e.entity_type in ('voucher', 'purchase_order')
   and e.actor_kind = 'user'
   and e.reason is not null and length(e.reason) between 1 and 2000
   and e.action ~ '\.(queried|answered|rejected|amended|cancelled|approved|submitted|paid)$';

-- --- Attachments can be withdrawn while a document is editable ---------------------------------
-- Never deleted: a withdrawn attachment keeps its row, who withdrew it and when.
alter table document_attachments
    add column removed_at timestamptz,
    add column removed_by uuid references users (id),
    add constraint document_attachments_removed check ((removed_at is null) = (removed_by is null));
grant update (removed_at, removed_by) on document_attachments to countersign_app;

-- --- Closed fiscal periods, enforced here --------------------------------------------------------
-- Every write to a document or a row hanging off it takes a shared per-organisation lock and then
-- looks for a closed period covering the document's date; opening, closing and reopening a
-- period takes the same lock exclusively. So a close waits for every document write in flight,
-- and a write that starts after the close sees it: nothing dated in a closed period commits after
-- the close. The check reads at a fresh snapshot, which only READ COMMITTED gives a statement
-- inside a transaction: document writes in any other isolation level are refused outright.
create function countersign_period_lock_key(p_tenant uuid) returns bigint
    language sql immutable
as $$ select hashtextextended('countersign.fiscal_period:' || p_tenant::text, 0) $$;

create function countersign_refuse_closed_period(p_tenant uuid, p_date date) returns boolean
    language plpgsql
as $$
declare
    closed text;
begin
    if current_setting('transaction_isolation') <> 'read committed' then
        raise exception 'document writes must run in READ COMMITTED (the closed-period check reads committed closes)'
            using errcode = 'CSPC2';
    end if;
    perform pg_advisory_xact_lock_shared(countersign_period_lock_key(p_tenant));
    select name into closed from fiscal_periods
     where tenant_id = p_tenant and status = 'closed' and p_date between starts_on and ends_on
     limit 1;
    if closed is not null then
        raise exception 'fiscal period % is closed', closed using errcode = 'CSPC1', detail = closed;
    end if;
    return true;
end
$$;

create function countersign_documents_period_guard() returns trigger
    language plpgsql
as $$
begin
    if tg_op in ('UPDATE', 'DELETE') then
        perform countersign_refuse_closed_period(old.tenant_id, old.document_date);
    end if;
    if tg_op in ('INSERT', 'UPDATE') then
        perform countersign_refuse_closed_period(new.tenant_id, new.document_date);
    end if;
    return coalesce(new, old);
end
$$;

-- Lines, approvals, attachments and notes carry no date: their document's date counts.
create function countersign_document_rows_period_guard() returns trigger
    language plpgsql
as $$
declare
    r record;
    d date;
begin
    if tg_op = 'DELETE' then r := old; else r := new; end if;
    select document_date into d from documents where tenant_id = r.tenant_id and id = r.document_id;
    if d is not null then
        perform countersign_refuse_closed_period(r.tenant_id, d);
    end if;
    return coalesce(new, old);
end
$$;

create trigger documents_closed_period before insert or update or delete on documents
    for each row execute function countersign_documents_period_guard();
create trigger document_lines_closed_period before insert or update or delete on document_lines
    for each row execute function countersign_document_rows_period_guard();
create trigger document_approvals_closed_period before insert or update or delete on document_approvals
    for each row execute function countersign_document_rows_period_guard();
create trigger document_attachments_closed_period before insert or update or delete on document_attachments
    for each row execute function countersign_document_rows_period_guard();
create trigger document_notes_closed_period before insert or update or delete on document_notes
    for each row execute function countersign_document_rows_period_guard();

-- Period changes take the lock exclusively (the application takes it first, before it locks the
-- period row; a direct UPDATE gets it here).
create function countersign_fiscal_periods_lock() returns trigger
    language plpgsql
as $$
begin
    perform pg_advisory_xact_lock(countersign_period_lock_key(coalesce(new.tenant_id, old.tenant_id)));
    return coalesce(new, old);
end
$$;
create trigger fiscal_periods_exclusive before insert or update or delete on fiscal_periods
    for each row execute function countersign_fiscal_periods_lock();
