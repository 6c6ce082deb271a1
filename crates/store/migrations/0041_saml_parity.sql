-- SAML single sign-on at parity with OpenID Connect (issue 18): the SSO-only rule with its one
-- break-glass account, and the group mapping applied when a person is provisioned, now also on
-- an organisation's SAML identity provider.
--
-- `sso_only_rules` is the one place the rule is read (password and email-code sign-in,
-- identity::signin::login and ::mfa): a row per enabled provider that is SSO-only, with its
-- break-glass account. It is a security_invoker view, so the RLS of both tables applies to the
-- caller: inside a tenant transaction it shows that organisation's rules only.

alter table saml_configs
    add column groups_attribute text not null default 'groups'
        check (groups_attribute ~ '^[A-Za-z0-9_:./-]{1,100}$'),
    -- {"<group>": {"role": "hod", "department": "OPS"}}, as oidc_configs.group_mapping.
    add column group_mapping    jsonb not null default '{}' check (jsonb_typeof(group_mapping) = 'object'),
    add column sso_only         boolean not null default false,
    add column break_glass_user uuid references users (id),
    add constraint saml_configs_sso_only_break_glass check (not sso_only or break_glass_user is not null);

create view sso_only_rules with (security_invoker = true) as
    select tenant_id, 'oidc'::text as protocol, break_glass_user
      from oidc_configs where enabled and sso_only
    union all
    select tenant_id, 'saml'::text, break_glass_user
      from saml_configs where enabled and sso_only;
grant select on sso_only_rules to countersign_app;
