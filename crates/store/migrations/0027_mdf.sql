-- Partner programmes (issue 17), part three: market development funds (MDF).
--
-- A budget is what one partner may spend in one period (a quarter, `YYYY-Qn`) in one currency;
-- the vendor sets it (by default from the allowance of the partner's tier). A partner requests
-- funds for an activity; a channel manager approves or rejects; against an approved request the
-- partner files claims with proof-of-performance files (blobs of crates/files); finance approves
-- or rejects a claim and pays it.
--
-- The money rules are the database's, so no interleaving of requests can break them:
--   * `mdf_budgets.committed_minor` is the sum of the budget's approved requests and
--     `mdf_requests.claimed_minor` the sum of a request's live claims (claimed, approved, paid).
--     Both are maintained by the triggers below, never by the application (a direct change is
--     refused), and their checks say a budget never goes negative
--     (`mdf_budgets_never_negative`) and claims never exceed the approved amount
--     (`mdf_requests_claims_within_approval`).
--   * The triggers change the parent row with an UPDATE, which takes its row lock: two racing
--     approvals (or claims) for the last of a budget (or request) are serialised on that row, and
--     the second sees the first's total and fails the check.
--   * Whoever requested or filed never decides it (table checks, as well as the policy engine).
--   * Every table carries `partner_id` with the restrictive `partner_isolation` policy of 0021,
--     and ownership chains are composite keys: a claim's partner is its request's, whose partner
--     is its budget's; a request's currency is its budget's, a claim's its request's.

-- The vendor's allowance per partner tier and currency: what a new budget gets by default.
create table mdf_allowances (
    tenant_id    uuid not null references tenants (id),
    id           uuid not null,
    tier         text not null check (tier in ('registered', 'silver', 'gold')),
    currency     text not null check (currency ~ '^[A-Z]{3}$'),
    amount_minor bigint not null check (amount_minor between 0 and 1000000000000000),
    created_by   uuid not null,
    created_at   timestamptz not null default now(),
    updated_at   timestamptz not null default now(),
    primary key (tenant_id, id),
    unique (tenant_id, tier, currency)
);
select countersign_protect('mdf_allowances');

create table mdf_budgets (
    tenant_id       uuid not null references tenants (id),
    id              uuid not null,
    partner_id      uuid not null,
    period          text not null check (period ~ '^[0-9]{4}-Q[1-4]$'),
    currency        text not null check (currency ~ '^[A-Z]{3}$'),
    amount_minor    bigint not null check (amount_minor between 0 and 1000000000000000),
    committed_minor bigint not null default 0 check (committed_minor >= 0),
    created_by      uuid not null,
    created_at      timestamptz not null default now(),
    updated_at      timestamptz not null default now(),
    primary key (tenant_id, id),
    unique (tenant_id, partner_id, period, currency),
    unique (tenant_id, currency, partner_id, id),
    foreign key (tenant_id, partner_id) references partners (tenant_id, id),
    constraint mdf_budgets_never_negative check (committed_minor <= amount_minor)
);
create index mdf_budgets_partner on mdf_budgets (tenant_id, partner_id, period);
select countersign_protect('mdf_budgets');
select countersign_protect_partner('mdf_budgets', 'partner_id');

create table mdf_requests (
    tenant_id       uuid not null references tenants (id),
    id              uuid not null,
    partner_id      uuid not null,
    budget_id       uuid not null,
    currency        text not null check (currency ~ '^[A-Z]{3}$'),
    activity        text not null check (length(activity) between 3 and 500),
    amount_minor    bigint not null check (amount_minor between 1 and 1000000000000000),
    status          text not null default 'requested' check (status in ('requested', 'approved', 'rejected')),
    claimed_minor   bigint not null default 0 check (claimed_minor >= 0),
    requested_by    uuid not null,
    decided_by      uuid,
    decided_at      timestamptz,
    decision_reason text check (decision_reason is null or length(decision_reason) between 3 and 2000),
    created_at      timestamptz not null default now(),
    updated_at      timestamptz not null default now(),
    primary key (tenant_id, id),
    unique (tenant_id, currency, partner_id, id),
    foreign key (tenant_id, partner_id) references partners (tenant_id, id),
    foreign key (tenant_id, currency, partner_id, budget_id)
        references mdf_budgets (tenant_id, currency, partner_id, id),
    constraint mdf_requests_claims_within_approval check (claimed_minor <= amount_minor),
    constraint mdf_requests_claims_only_when_approved check (status = 'approved' or claimed_minor = 0),
    constraint mdf_requests_requester_never_decides check (decided_by is null or decided_by <> requested_by),
    check ((status = 'requested') = (decided_by is null and decided_at is null))
);
create index mdf_requests_partner on mdf_requests (tenant_id, partner_id, created_at);
create index mdf_requests_budget on mdf_requests (tenant_id, budget_id);
select countersign_protect('mdf_requests');
select countersign_protect_partner('mdf_requests', 'partner_id');

create table mdf_claims (
    tenant_id       uuid not null references tenants (id),
    id              uuid not null,
    partner_id      uuid not null,
    request_id      uuid not null,
    currency        text not null check (currency ~ '^[A-Z]{3}$'),
    amount_minor    bigint not null check (amount_minor between 1 and 1000000000000000),
    description     text not null check (length(description) between 3 and 2000),
    status          text not null default 'claimed' check (status in ('claimed', 'approved', 'rejected', 'paid')),
    claimed_by      uuid not null,
    decided_by      uuid,
    decided_at      timestamptz,
    decision_reason text check (decision_reason is null or length(decision_reason) between 3 and 2000),
    paid_by         uuid,
    paid_at         timestamptz,
    created_at      timestamptz not null default now(),
    updated_at      timestamptz not null default now(),
    primary key (tenant_id, id),
    unique (tenant_id, partner_id, id),
    foreign key (tenant_id, partner_id) references partners (tenant_id, id),
    foreign key (tenant_id, currency, partner_id, request_id)
        references mdf_requests (tenant_id, currency, partner_id, id),
    constraint mdf_claims_filer_never_decides check (decided_by is null or decided_by <> claimed_by),
    constraint mdf_claims_filer_never_pays check (paid_by is null or paid_by <> claimed_by),
    check ((status = 'claimed') = (decided_by is null and decided_at is null)),
    check ((status = 'paid') = (paid_by is not null and paid_at is not null))
);
create index mdf_claims_partner on mdf_claims (tenant_id, partner_id, created_at);
create index mdf_claims_request on mdf_claims (tenant_id, request_id);
select countersign_protect('mdf_claims');
select countersign_protect_partner('mdf_claims', 'partner_id');

-- Proof of performance: stored files (crates/files) attached to a claim.
create table mdf_claim_proofs (
    tenant_id  uuid not null references tenants (id),
    id         uuid not null,
    partner_id uuid not null,
    claim_id   uuid not null,
    blob_id    uuid not null,
    added_by   uuid not null,
    created_at timestamptz not null default now(),
    primary key (tenant_id, id),
    unique (tenant_id, claim_id, blob_id),
    foreign key (tenant_id, partner_id) references partners (tenant_id, id),
    foreign key (tenant_id, partner_id, claim_id) references mdf_claims (tenant_id, partner_id, id),
    foreign key (tenant_id, blob_id) references blobs (tenant_id, id)
);
create index mdf_claim_proofs_claim on mdf_claim_proofs (tenant_id, claim_id);
select countersign_protect('mdf_claim_proofs');
select countersign_protect_partner('mdf_claim_proofs', 'partner_id');

-- The counters: written only from the triggers below (depth 2: a trigger's own UPDATE). A new
-- row always starts at zero whatever was sent.
create function mdf_budget_total_guard() returns trigger
    language plpgsql
as $$
begin
    if tg_op = 'INSERT' then
        new.committed_minor := 0;
    elsif pg_trigger_depth() < 2 and new.committed_minor is distinct from old.committed_minor then
        raise exception 'MDF totals are kept by the database, not written'
            using errcode = '42501', constraint = 'mdf_totals_kept_by_triggers';
    end if;
    return new;
end
$$;
create trigger mdf_budgets_total_guard before insert or update on mdf_budgets
    for each row execute function mdf_budget_total_guard();

create function mdf_request_total_guard() returns trigger
    language plpgsql
as $$
begin
    if tg_op = 'INSERT' then
        new.claimed_minor := 0;
    elsif pg_trigger_depth() < 2 and new.claimed_minor is distinct from old.claimed_minor then
        raise exception 'MDF totals are kept by the database, not written'
            using errcode = '42501', constraint = 'mdf_totals_kept_by_triggers';
    end if;
    return new;
end
$$;
create trigger mdf_requests_total_guard before insert or update on mdf_requests
    for each row execute function mdf_request_total_guard();

-- An approved request commits its amount to its budget; a live claim (claimed, approved, paid)
-- draws on its request's approved amount, a rejected one gives it back. The old row's share is
-- taken from its parent and the new row's added to its parent (the same row, usually).
create function mdf_request_commits() returns trigger
    language plpgsql
as $$
begin
    if tg_op = 'UPDATE' and old.budget_id = new.budget_id and old.status = new.status
       and old.amount_minor = new.amount_minor then
        return null;
    end if;
    if tg_op in ('UPDATE', 'DELETE') and old.status = 'approved' then
        update mdf_budgets set committed_minor = committed_minor - old.amount_minor, updated_at = now()
         where tenant_id = old.tenant_id and id = old.budget_id;
    end if;
    if tg_op in ('INSERT', 'UPDATE') and new.status = 'approved' then
        update mdf_budgets set committed_minor = committed_minor + new.amount_minor, updated_at = now()
         where tenant_id = new.tenant_id and id = new.budget_id;
    end if;
    return null;
end
$$;
create trigger mdf_requests_commit after insert or update or delete on mdf_requests
    for each row execute function mdf_request_commits();

create function mdf_claim_draws() returns trigger
    language plpgsql
as $$
begin
    if tg_op = 'UPDATE' and old.request_id = new.request_id and (old.status = 'rejected') = (new.status = 'rejected')
       and old.amount_minor = new.amount_minor then
        return null;
    end if;
    if tg_op in ('UPDATE', 'DELETE') and old.status <> 'rejected' then
        update mdf_requests set claimed_minor = claimed_minor - old.amount_minor, updated_at = now()
         where tenant_id = old.tenant_id and id = old.request_id;
    end if;
    if tg_op in ('INSERT', 'UPDATE') and new.status <> 'rejected' then
        update mdf_requests set claimed_minor = claimed_minor + new.amount_minor, updated_at = now()
         where tenant_id = new.tenant_id and id = new.request_id;
    end if;
    return null;
end
$$;
create trigger mdf_claims_draw after insert or update or delete on mdf_claims
    for each row execute function mdf_claim_draws();
