-- Partner programmes (issue 17), part two: opportunities and commissions.
--
-- Opportunities and commissions belong to a partner: both carry `partner_id` and the restrictive
-- `partner_isolation` policy of 0021 (a partner person's transaction sees only its own partner's
-- rows; vendor staff see all of the organisation's). Commission plans are the vendor's
-- configuration, keyed by tier and product: a tenant table without a partner dimension (the
-- policy engine lets only vendor staff read or change them; computing a commission reads the
-- plan inside the closing transaction).
--
-- Ownership chains are keys, not application checks: an opportunity's partner is its lead's (or
-- deal registration's) partner, and a commission's partner is its opportunity's.

alter table partner_leads add constraint partner_leads_owner unique (tenant_id, id, partner_id);
alter table deal_registrations add constraint deal_registrations_owner unique (tenant_id, id, partner_id);

create table partner_opportunities (
    tenant_id      uuid not null references tenants (id),
    id             uuid not null,
    partner_id     uuid not null,
    -- Where it came from: exactly one of a lead and an approved deal registration.
    lead_id        uuid,
    deal_id        uuid,
    name           text not null check (length(name) between 1 and 200),
    product        text not null check (product ~ '^[a-z0-9][a-z0-9_-]{0,63}$'),
    amount_minor   bigint not null check (amount_minor between 1 and 1000000000000000),
    currency       text not null check (currency ~ '^[A-Z]{3}$'),
    expected_close date not null,
    stage          text not null default 'qualified'
                   check (stage in ('qualified', 'proposal', 'negotiation', 'won', 'lost')),
    closed_by      uuid,
    closed_at      timestamptz,
    created_by     uuid not null,
    created_at     timestamptz not null default now(),
    updated_at     timestamptz not null default now(),
    primary key (tenant_id, id),
    unique (tenant_id, id, partner_id),
    unique (tenant_id, lead_id),
    unique (tenant_id, deal_id),
    foreign key (tenant_id, partner_id) references partners (tenant_id, id),
    foreign key (tenant_id, lead_id, partner_id) references partner_leads (tenant_id, id, partner_id),
    foreign key (tenant_id, deal_id, partner_id) references deal_registrations (tenant_id, id, partner_id),
    check ((lead_id is null) <> (deal_id is null)),
    check ((stage in ('won', 'lost')) = (closed_at is not null and closed_by is not null))
);
create index partner_opportunities_partner on partner_opportunities (tenant_id, partner_id, created_at);
select countersign_protect('partner_opportunities');
select countersign_protect_partner('partner_opportunities', 'partner_id');

-- A plan: the rate for a tier, product and currency. `bands` are graduated volume tiers, a JSON
-- array of {"fromMinor": n, "rateBp": r} with strictly increasing fromMinor: the part of an
-- amount above fromMinor (up to the next band) earns r basis points instead of `rate_bp`.
create table commission_plans (
    tenant_id   uuid not null references tenants (id),
    id          uuid not null,
    tier        text not null check (tier in ('registered', 'silver', 'gold')),
    product     text not null check (product ~ '^[a-z0-9][a-z0-9_-]{0,63}$'),
    currency    text not null check (currency ~ '^[A-Z]{3}$'),
    rate_bp     integer not null check (rate_bp between 0 and 10000),
    bands       jsonb not null default '[]' check (jsonb_typeof(bands) = 'array' and jsonb_array_length(bands) <= 20),
    bonus_minor bigint not null default 0 check (bonus_minor between 0 and 1000000000000000),
    created_by  uuid not null,
    created_at  timestamptz not null default now(),
    primary key (tenant_id, id),
    unique (tenant_id, tier, product, currency)
);
select countersign_protect('commission_plans');

-- One commission per won opportunity, computed when it closed (the plan's terms are copied:
-- a later plan change does not rewrite it). The closer never approves it: a table check too.
create table commissions (
    tenant_id      uuid not null references tenants (id),
    id             uuid not null,
    partner_id     uuid not null,
    opportunity_id uuid not null,
    plan_id        uuid not null,
    currency       text not null check (currency ~ '^[A-Z]{3}$'),
    base_minor     bigint not null check (base_minor between 1 and 1000000000000000),
    rate_bp        integer not null check (rate_bp between 0 and 10000),
    bands          jsonb not null check (jsonb_typeof(bands) = 'array'),
    bonus_minor    bigint not null check (bonus_minor >= 0),
    amount_minor   bigint not null check (amount_minor between 0 and 2000000000000000),
    status         text not null default 'calculated'
                   check (status in ('calculated', 'approved', 'payable', 'paid', 'disputed')),
    disputed_from  text check (disputed_from in ('calculated', 'approved', 'payable')),
    dispute_reason text check (dispute_reason is null or length(dispute_reason) between 3 and 2000),
    resolution     text check (resolution is null or length(resolution) between 3 and 2000),
    closed_by      uuid not null,
    approved_by    uuid,
    approved_at    timestamptz,
    paid_at        timestamptz,
    created_at     timestamptz not null default now(),
    updated_at     timestamptz not null default now(),
    primary key (tenant_id, id),
    unique (tenant_id, opportunity_id),
    foreign key (tenant_id, partner_id) references partners (tenant_id, id),
    foreign key (tenant_id, opportunity_id, partner_id) references partner_opportunities (tenant_id, id, partner_id),
    foreign key (tenant_id, plan_id) references commission_plans (tenant_id, id),
    constraint commissions_closer_never_approves check (approved_by is null or approved_by <> closed_by),
    check ((status = 'disputed') = (disputed_from is not null)),
    check (status not in ('approved', 'payable', 'paid') or approved_by is not null),
    check ((status = 'paid') = (paid_at is not null))
);
create index commissions_partner on commissions (tenant_id, partner_id, created_at);
select countersign_protect('commissions');
select countersign_protect_partner('commissions', 'partner_id');
