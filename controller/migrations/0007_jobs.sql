-- Preemptible jobs (SPEC §5): low-priority containers on idle dedicated capacity, given
-- notice and stopped when a paying server needs the room, billed to their owner per GiB-hour.
CREATE TABLE jobs (
    id                  BIGSERIAL PRIMARY KEY,
    owner_id            BIGINT NOT NULL REFERENCES owners (id),
    image               TEXT NOT NULL,
    cmd                 JSONB NOT NULL DEFAULT '[]',
    ram_mib             INTEGER NOT NULL CHECK (ram_mib > 0),
    max_duration_s      BIGINT NOT NULL CHECK (max_duration_s > 0),
    price_per_gib_hour  NUMERIC NOT NULL CHECK (price_per_gib_hour >= 0),
    state               TEXT NOT NULL DEFAULT 'queued',
    node_id             BIGINT REFERENCES nodes (id),
    created_at          TIMESTAMPTZ NOT NULL,
    started_at          TIMESTAMPTZ,
    kill_at             TIMESTAMPTZ,
    ended_at            TIMESTAMPTZ,
    outcome             TEXT
);
CREATE INDEX jobs_open ON jobs (id) WHERE state IN ('queued', 'running', 'noticed');
