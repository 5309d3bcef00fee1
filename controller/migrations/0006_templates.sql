-- The template a server runs (`[controller.templates.<name>]`); NULL: the default template.
ALTER TABLE servers ADD COLUMN template TEXT;
