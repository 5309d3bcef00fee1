-- Dedicated nodes added through the admin API: their Docker endpoint and game address
-- (NULL for nodes from the config file and for VMs), and whether an operator drained them.
ALTER TABLE nodes ADD COLUMN docker TEXT;
ALTER TABLE nodes ADD COLUMN address TEXT;
ALTER TABLE nodes ADD COLUMN drained BOOLEAN NOT NULL DEFAULT false;
