-- The controller's store (issue 6). Times are timestamptz; RAM in MiB, disk in MB.

CREATE TABLE owners (
    id          BIGSERIAL PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created_at  TIMESTAMPTZ NOT NULL
);

-- Owner API tokens: only a SHA-256 of the token is stored, never the token.
CREATE TABLE api_tokens (
    id            BIGSERIAL PRIMARY KEY,
    owner_id      BIGINT NOT NULL REFERENCES owners(id),
    token_sha256  BYTEA NOT NULL UNIQUE CHECK (octet_length(token_sha256) = 32),
    created_at    TIMESTAMPTZ NOT NULL,
    revoked_at    TIMESTAMPTZ
);

CREATE TABLE nodes (
    id           BIGSERIAL PRIMARY KEY,
    name         TEXT NOT NULL UNIQUE,
    kind         TEXT NOT NULL CHECK (kind IN ('dedicated', 'cloud')),
    type_name    TEXT NOT NULL,
    provider_id  TEXT UNIQUE,
    state        TEXT NOT NULL CHECK (state IN ('provisioning', 'ready', 'cordoned', 'unreachable', 'dead', 'deleted')),
    ram_mib      INTEGER NOT NULL CHECK (ram_mib > 0),
    usable_mib   INTEGER NOT NULL CHECK (usable_mib >= 0 AND usable_mib <= ram_mib),
    created_at   TIMESTAMPTZ NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL
);

CREATE TABLE servers (
    id           BIGSERIAL PRIMARY KEY,
    owner_id     BIGINT NOT NULL REFERENCES owners(id),
    name         TEXT NOT NULL,
    ram_mib      INTEGER NOT NULL CHECK (ram_mib > 0),
    disk_mb      BIGINT NOT NULL CHECK (disk_mb >= 0),
    pay_per_use  BOOLEAN NOT NULL,
    cost_mode    TEXT NOT NULL CHECK (cost_mode IN ('off', 'suggest', 'auto')),
    state        TEXT NOT NULL CHECK (state IN ('new', 'queued', 'starting', 'running', 'sleeping', 'archived', 'deleted')),
    node_id      BIGINT REFERENCES nodes(id),
    created_at   TIMESTAMPTZ NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL
);
-- A name is unique among an owner's servers that are not deleted.
CREATE UNIQUE INDEX servers_owner_name ON servers (owner_id, name) WHERE state <> 'deleted';

-- Where a server ran: one row per start, closed when it stops.
CREATE TABLE placements (
    id          BIGSERIAL PRIMARY KEY,
    server_id   BIGINT NOT NULL REFERENCES servers(id),
    node_id     BIGINT NOT NULL REFERENCES nodes(id),
    started_at  TIMESTAMPTZ NOT NULL,
    ended_at    TIMESTAMPTZ
);
CREATE UNIQUE INDEX placements_open ON placements (server_id) WHERE ended_at IS NULL;

-- The append-only event log: what happened and every decision with its reason.
CREATE TABLE events (
    seq        BIGSERIAL PRIMARY KEY,
    at         TIMESTAMPTZ NOT NULL,
    kind       TEXT NOT NULL,
    server_id  BIGINT,
    node_id    BIGINT,
    data       JSONB NOT NULL DEFAULT '{}'
);
CREATE INDEX events_at ON events (at);

CREATE FUNCTION events_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'the event log is append-only';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_append_only();

CREATE TABLE forecasts (
    id        BIGSERIAL PRIMARY KEY,
    made_at   TIMESTAMPTZ NOT NULL,
    document  JSONB NOT NULL
);

-- External actions, written before they are attempted (crash recovery): the key makes a
-- retried intent the same intent.
CREATE TABLE intents (
    id           BIGSERIAL PRIMARY KEY,
    key          TEXT NOT NULL UNIQUE,
    action       TEXT NOT NULL,
    data         JSONB NOT NULL,
    state        TEXT NOT NULL CHECK (state IN ('pending', 'done', 'failed')),
    created_at   TIMESTAMPTZ NOT NULL,
    finished_at  TIMESTAMPTZ,
    outcome      JSONB
);
CREATE INDEX intents_pending ON intents (id) WHERE state = 'pending';
