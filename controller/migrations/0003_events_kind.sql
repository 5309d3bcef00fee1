-- The latest events of some kinds (the scaling view) without reading the whole log.
CREATE INDEX events_kind_seq ON events (kind, seq);
