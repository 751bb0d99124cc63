-- Projects owned by accounts. The foreign key includes tenant_id: foreign-key checks
-- bypass row-level security, so a key on `owner_id` alone would let a pool tenant point a
-- project at another tenant's account (and probe which account ids exist).
CREATE TABLE projects (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id text NOT NULL,
    owner_id bigint NOT NULL,
    name text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, name),
    FOREIGN KEY (tenant_id, owner_id) REFERENCES accounts (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX projects_owner_idx ON projects (tenant_id, owner_id);
