-- A provisioned person's SCIM record (0030) is the identity provider's view of one membership:
-- when the retention sweep purges a membership soft-deleted past retention
-- (identity::directory::retention), its SCIM record goes with it instead of blocking the purge.
alter table scim_users drop constraint scim_users_tenant_id_user_id_fkey;
alter table scim_users add constraint scim_users_tenant_id_user_id_fkey
    foreign key (tenant_id, user_id) references memberships (tenant_id, user_id) on delete cascade;
