-- SCIM 2.0 Groups (issue 18): the identity provider's groups of one organisation, their members
-- (provisioned people of the same organisation), and the organisation's mapping of a group to a
-- role and/or a department. Every table is a tenant table (RLS by `countersign_protect`).

create table scim_groups (
    tenant_id    uuid not null references tenants (id),
    id           uuid not null,
    display_name text not null check (length(display_name) between 1 and 200),
    external_id  text check (length(external_id) between 1 and 254),
    -- The ETag (`meta.version`).
    version      bigint not null default 1 check (version > 0),
    created_at   timestamptz not null default now(),
    updated_at   timestamptz not null default now(),
    primary key (tenant_id, id)
);
-- A mapping names a group by displayName or externalId: both are unique in the organisation
-- (displayName case-insensitively, as identity providers compare it).
create unique index scim_groups_display_name on scim_groups (tenant_id, lower(display_name));
create unique index scim_groups_external_id on scim_groups (tenant_id, external_id) where external_id is not null;
select countersign_protect('scim_groups');

-- A member is a person the identity provider provisioned here (SCIM User): the foreign keys keep
-- another organisation's people out even if a check above them were forgotten.
create table scim_group_members (
    tenant_id  uuid not null references tenants (id),
    group_id   uuid not null,
    user_id    uuid not null,
    added_at   timestamptz not null default now(),
    primary key (tenant_id, group_id, user_id),
    foreign key (tenant_id, group_id) references scim_groups (tenant_id, id) on delete cascade,
    foreign key (tenant_id, user_id) references scim_users (tenant_id, user_id) on delete cascade
);
create index scim_group_members_user on scim_group_members (tenant_id, user_id);
select countersign_protect('scim_group_members');

-- An organisation setting: people in the group named by `group_key` (its displayName or its
-- externalId) hold `role` and/or belong to `department_id`. Deny by default: never owner, never a
-- partner person's role (those come only from the partner programme).
create table scim_group_mappings (
    tenant_id     uuid not null references tenants (id),
    id            uuid not null,
    match_on      text not null check (match_on in ('display_name', 'external_id')),
    group_key     text not null check (length(group_key) between 1 and 254),
    role          text check (role is null or role not in ('owner', 'partner_admin', 'partner_agent')),
    department_id uuid,
    created_by    text not null,
    created_at    timestamptz not null default now(),
    primary key (tenant_id, id),
    foreign key (tenant_id, department_id) references departments (tenant_id, id),
    check (role is not null or department_id is not null)
);
create unique index scim_group_mappings_key on scim_group_mappings (tenant_id, match_on, lower(group_key));
select countersign_protect('scim_group_mappings');

-- What a person held before a mapped group changed it, so leaving the last such group gives it
-- back: `groups_role_from` is set while groups decide the role; `groups_department_held` says
-- groups decide the department (the one before may have been none).
alter table scim_users
    add column groups_role_from text,
    add column groups_department_from uuid,
    add column groups_department_held boolean not null default false;
