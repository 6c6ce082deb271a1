-- Files for attachments made by reference (issue 16): the host operator stores the file of a
-- by-reference attachment in place (`countersign admin attach-reference`), which sets the row's
-- blob, type, hash and reference once. The application role may change those columns only in
-- that one way: from no file to a file. Repointing an attachment at another file, or taking its
-- file away, stays impossible for it (the owner — migrations, tests' fixtures — is not bound).
grant update (blob_id, reference, media_type, sha256) on document_attachments to countersign_app;

create function countersign_attachment_file_once() returns trigger
    language plpgsql
as $$
begin
    if current_user = 'countersign_app'
       and (new.blob_id is distinct from old.blob_id
            or new.reference is distinct from old.reference
            or new.media_type is distinct from old.media_type
            or new.sha256 is distinct from old.sha256)
       and (old.blob_id is not null or new.blob_id is null) then
        raise exception 'an attachment''s file is set once, on an attachment made by reference'
            using errcode = '23514';
    end if;
    return new;
end
$$;
create trigger document_attachments_file_once before update on document_attachments
    for each row execute function countersign_attachment_file_once();
