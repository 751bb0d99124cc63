-- Primary keys scoped to the tenant: (tenant_id, id) instead of the global identity id.
-- In the pool, a key without tenant_id is shared by every tenant: a row moved into the
-- pool keeps its id and collides with another tenant's, and a tenant able to choose ids
-- would learn from a duplicate-key error which ids others have. tenantctl refuses such
-- keys in new pool migrations; this moves installs made with 0001 and 0002 over. Bridge
-- and silo schemas get the same keys, so every tier keeps one schema.
--
-- Order: the foreign key of projects depends on the unique index of accounts
-- (tenant_id, id), which the new primary key replaces, so the foreign key goes first and
-- comes back pointing at the primary key; rows are checked again when it does.
ALTER TABLE projects DROP CONSTRAINT projects_tenant_id_owner_id_fkey;

ALTER TABLE accounts DROP CONSTRAINT accounts_pkey;
ALTER TABLE accounts DROP CONSTRAINT accounts_tenant_id_id_key;
ALTER TABLE accounts ADD CONSTRAINT accounts_pkey PRIMARY KEY (tenant_id, id);

ALTER TABLE projects DROP CONSTRAINT projects_pkey;
ALTER TABLE projects ADD CONSTRAINT projects_pkey PRIMARY KEY (tenant_id, id);

ALTER TABLE projects ADD CONSTRAINT projects_tenant_id_owner_id_fkey
    FOREIGN KEY (tenant_id, owner_id) REFERENCES accounts (tenant_id, id) ON DELETE CASCADE;
