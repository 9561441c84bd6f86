-- Full-text search columns, written by the worker (not by the API), so a
-- document is only searchable through PostgreSQL once the worker indexed it.
ALTER TABLE documents
    ADD COLUMN search_vector   tsvector,
    ADD COLUMN indexed_version integer,
    ADD COLUMN indexed_at      timestamptz;

CREATE INDEX documents_search_idx ON documents USING GIN (search_vector);
