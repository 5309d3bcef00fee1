-- Custom host names players use to reach a server through the gateway (lower case, unique).
CREATE TABLE server_hosts (
    host        TEXT PRIMARY KEY,
    server_id   BIGINT NOT NULL REFERENCES servers(id),
    created_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX server_hosts_server ON server_hosts (server_id);
