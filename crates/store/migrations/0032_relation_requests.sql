-- Requests to relations (issue 16's portals): a member of the organisation asks a vendor or
-- client a question about a document addressed to them ("please send the signed delivery
-- note"), optionally asking for a file; the relation's people answer in the portal with text
-- and/or one of their own uploads on that document, which closes the request.
--
-- Isolation as the other relation tables (migration 0028): tenant_isolation, the restrictive
-- relation_isolation (a relation's person sees and touches only their own relation's requests;
-- no scope sees nothing), and only the organisation's side ('internal') or the bypass inserts.
-- A relation's person may update (answer) a request of their own relation, and only the answer
-- columns (column privileges). An answered request is closed for good (a trigger).

create table relation_requests (
    tenant_id            uuid not null references tenants (id),
    id                   uuid not null,
    relation_id          uuid not null,
    document_id          uuid not null,
    question             text not null check (length(question) between 1 and 2000),
    file_requested       boolean not null default false,
    asked_by             uuid not null references users (id),
    created_at           timestamptz not null default now(),
    status               text not null default 'open' check (status in ('open', 'answered')),
    answer               text check (answer is null or length(answer) between 1 and 4000),
    answer_attachment_id uuid,
    answered_by          uuid references users (id),
    answered_at          timestamptz,
    primary key (tenant_id, id),
    foreign key (tenant_id, relation_id) references relations (tenant_id, id),
    foreign key (tenant_id, document_id) references documents (tenant_id, id),
    -- The file of an answer is an attachment of the same document.
    foreign key (tenant_id, document_id, answer_attachment_id)
        references document_attachments (tenant_id, document_id, id),
    check ((status = 'answered') = (answered_at is not null)),
    check (status = 'open' or (answered_by is not null and (answer is not null or answer_attachment_id is not null)))
);
create index relation_requests_document on relation_requests (tenant_id, document_id, created_at);
create index relation_requests_relation on relation_requests (tenant_id, relation_id, status, created_at);
select countersign_protect('relation_requests');
select countersign_protect_relation('relation_requests', 'relation_id');

-- Only the organisation asks.
create policy relation_writes_insert on relation_requests as restrictive for insert
    with check ((select countersign_bypass_active()) or (select countersign_relation_scope_text()) = 'internal');
revoke delete on relation_requests from countersign_app;
revoke update on relation_requests from countersign_app;
grant update (status, answer, answer_attachment_id, answered_by, answered_at) on relation_requests to countersign_app;

create function countersign_relation_request_closed() returns trigger
    language plpgsql
as $$
begin
    raise exception 'relation request % is already answered', old.id using errcode = 'P0001';
end
$$;
create trigger relation_requests_closed before update on relation_requests
    for each row when (old.status <> 'open') execute function countersign_relation_request_closed();
