-- Money-moving documents (payment vouchers, purchase orders), their approvals and fiscal periods.
--
-- Every table is a tenant table (composite keys carrying tenant_id, protected). Amounts are
-- integer minor units of an ISO 4217 currency; the application validates codes and exponents.
-- Documents are never deleted by the application: they are cancelled, rejected or paid.

-- Above this amount (minor units, in the document's currency) the MD approves after finance.
-- NULL: no MD level.
alter table tenants add column md_threshold_minor bigint check (md_threshold_minor >= 0);

create table fiscal_periods (
    tenant_id        uuid not null references tenants (id),
    id               uuid not null,
    name             text not null check (length(name) between 1 and 100),
    starts_on        date not null,
    ends_on          date not null,
    status           text not null default 'open' check (status in ('open', 'closed')),
    closed_at        timestamptz,
    closed_by        uuid,
    reopened_reason  text check (length(reopened_reason) between 3 and 500),
    created_at       timestamptz not null default now(),
    updated_at       timestamptz not null default now(),
    primary key (tenant_id, id),
    unique (tenant_id, name),
    check (ends_on >= starts_on),
    check ((status = 'closed') = (closed_at is not null))
);
create index fiscal_periods_dates on fiscal_periods (tenant_id, starts_on, ends_on);
select countersign_protect('fiscal_periods');
revoke delete on fiscal_periods from countersign_app;

create table documents (
    tenant_id      uuid not null references tenants (id),
    id             uuid not null,
    kind           text not null check (kind in ('voucher', 'purchase_order')),
    department_id  uuid not null,
    raised_by      uuid not null references users (id),
    title          text not null check (length(title) between 1 and 200),
    document_date  date not null,
    currency       text not null check (currency ~ '^[A-Z]{3}$'),
    amount_minor   bigint not null check (amount_minor between 0 and 1000000000000000),
    status         text not null default 'draft' check (status in (
                      'draft', 'submitted', 'hod_approved', 'finance_approved', 'queried',
                      'approved', 'paid', 'rejected', 'cancelled')),
    queried_from   text check (queried_from in ('submitted', 'hod_approved', 'finance_approved')),
    -- Optimistic concurrency: every change bumps it; writers name the version they read.
    version        integer not null default 1 check (version >= 1),
    -- Amendments start a new approval round; approvals of earlier rounds no longer count.
    round          integer not null default 1 check (round >= 1),
    created_at     timestamptz not null default now(),
    updated_at     timestamptz not null default now(),
    primary key (tenant_id, id),
    foreign key (tenant_id, department_id) references departments (tenant_id, id),
    check ((status = 'queried') = (queried_from is not null))
);
create index documents_status on documents (tenant_id, status, department_id);
create index documents_raiser on documents (tenant_id, raised_by, created_at desc);
select countersign_protect('documents');
revoke delete on documents from countersign_app;

create table document_lines (
    tenant_id     uuid not null references tenants (id),
    document_id   uuid not null,
    line_no       integer not null check (line_no between 1 and 1000),
    description   text not null check (length(description) between 1 and 500),
    amount_minor  bigint not null check (amount_minor between 0 and 1000000000000000),
    primary key (tenant_id, document_id, line_no),
    foreign key (tenant_id, document_id) references documents (tenant_id, id)
);
select countersign_protect('document_lines');

create table document_approvals (
    tenant_id     uuid not null references tenants (id),
    document_id   uuid not null,
    round         integer not null,
    level         text not null check (level in ('hod', 'finance', 'md')),
    approver      uuid not null references users (id),
    approver_role text not null,
    approved_at   timestamptz not null default now(),
    primary key (tenant_id, document_id, round, level),
    -- One person, one level per round (separation of duties, also enforced by policy).
    unique (tenant_id, document_id, round, approver),
    foreign key (tenant_id, document_id) references documents (tenant_id, id)
);
select countersign_protect('document_approvals');
revoke delete, update on document_approvals from countersign_app;
