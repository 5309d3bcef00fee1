-- Accounts and billing (issue 7): an append-only ledger per owner and each owner's balance.
-- Amounts are exact decimals in EUR (credits positive, charges negative). Every entry has an
-- idempotency key (a charge: its server and metering window), so a retried or concurrent
-- posting never books twice: the insert and the balance update share one transaction.

CREATE TABLE ledger (
    id            BIGSERIAL PRIMARY KEY,
    owner_id      BIGINT NOT NULL REFERENCES owners(id),
    kind          TEXT NOT NULL CHECK (kind IN ('grant', 'topup', 'charge', 'refund', 'adjustment')),
    amount        NUMERIC(20, 6) NOT NULL,
    key           TEXT NOT NULL UNIQUE,
    at            TIMESTAMPTZ NOT NULL,
    server_id     BIGINT REFERENCES servers(id),
    window_start  TIMESTAMPTZ,
    data          JSONB NOT NULL DEFAULT '{}',
    CHECK (kind <> 'charge' OR amount <= 0),
    CHECK (kind NOT IN ('grant', 'topup', 'refund') OR amount >= 0)
);
CREATE INDEX ledger_owner ON ledger (owner_id, id);

CREATE FUNCTION ledger_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'the ledger is append-only';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER ledger_append_only BEFORE UPDATE OR DELETE ON ledger
    FOR EACH ROW EXECUTE FUNCTION ledger_append_only();

-- The running sum of each owner's ledger, updated in the transaction that appends.
CREATE TABLE balances (
    owner_id  BIGINT PRIMARY KEY REFERENCES owners(id),
    balance   NUMERIC(20, 6) NOT NULL
);
