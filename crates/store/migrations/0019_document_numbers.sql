-- Human document numbers: PV-2026-0184 for vouchers, PO-2026-0031 for purchase orders; per
-- organisation, per kind, per year of raising; gap-free. Numbered by the database on insert, so
-- no writer can skip, reuse or choose one: the counter row is taken in the inserting transaction
-- (a rolled-back raise gives its number back; concurrent raises queue on the row), and a number
-- never changes afterwards.

create table document_numbers (
    tenant_id  uuid not null references tenants (id),
    kind       text not null check (kind in ('voucher', 'purchase_order')),
    year       integer not null check (year between 2000 and 2099),
    last       integer not null check (last >= 1),
    primary key (tenant_id, kind, year)
);
select countersign_protect('document_numbers');
revoke delete on document_numbers from countersign_app;

create function countersign_document_number(p_kind text, p_year integer, p_n integer) returns text
    language sql immutable
as $$
    select (case p_kind when 'voucher' then 'PV' else 'PO' end) || '-' || p_year || '-'
           || case when p_n < 10000 then lpad(p_n::text, 4, '0') else p_n::text end
$$;

alter table documents add column number text;

-- Existing documents, in the order they were raised. Row-level security is forced on both
-- tables, also for their owner: lifted for this backfill only, inside this transaction (the
-- migration guard checks it is back before anything commits).
alter table documents no force row level security;
alter table document_numbers no force row level security;
with numbered as (
    select tenant_id, id, kind, extract(year from created_at at time zone 'utc')::int as year,
           row_number() over (partition by tenant_id, kind, extract(year from created_at at time zone 'utc')
                              order by created_at, id)::int as n
      from documents
)
update documents d
   set number = countersign_document_number(numbered.kind, numbered.year, numbered.n)
  from numbered
 where d.tenant_id = numbered.tenant_id and d.id = numbered.id;
insert into document_numbers (tenant_id, kind, year, last)
select tenant_id, kind, extract(year from created_at at time zone 'utc')::int, count(*)::int
  from documents
 group by tenant_id, kind, extract(year from created_at at time zone 'utc')::int;
alter table documents force row level security;
alter table document_numbers force row level security;

alter table documents alter column number set not null;
alter table documents add constraint documents_number_unique unique (tenant_id, number);

create function countersign_number_document() returns trigger
    language plpgsql
as $$
declare
    y integer := extract(year from now() at time zone 'utc')::integer;
    n integer;
begin
    if tg_op = 'UPDATE' then
        if new.number is distinct from old.number then
            raise exception 'a document number never changes';
        end if;
        return new;
    end if;
    insert into document_numbers (tenant_id, kind, year, last) values (new.tenant_id, new.kind, y, 1)
    on conflict (tenant_id, kind, year) do update set last = document_numbers.last + 1
    returning last into n;
    new.number := countersign_document_number(new.kind, y, n);
    return new;
end
$$;
create trigger documents_number before insert or update of number on documents
    for each row execute function countersign_number_document();
