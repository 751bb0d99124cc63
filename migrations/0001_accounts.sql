-- The application's users. Every table carries `tenant_id text not null`, whatever the
-- tier: in the pool, row-level security filters on it; in bridge and silo schemas a CHECK
-- pins it to the tenant. The same file then serves every tier, and a tenant moves between
-- tiers by copying rows.
CREATE TABLE accounts (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id text NOT NULL,
    email text NOT NULL,
    name text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    -- Unique per tenant, not globally: in the pool, a global unique email would let one
    -- tenant learn that another tenant has that user (the insert would fail).
    UNIQUE (tenant_id, email),
    -- Target of tenant-scoped foreign keys (see 0002).
    UNIQUE (tenant_id, id)
);
