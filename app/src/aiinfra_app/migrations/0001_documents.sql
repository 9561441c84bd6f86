CREATE TABLE documents (
    id          uuid PRIMARY KEY,
    title       text NOT NULL,
    body        text NOT NULL,
    tags        text[] NOT NULL DEFAULT '{}',
    source      text,
    version     integer NOT NULL DEFAULT 1,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX documents_created_at_idx ON documents (created_at DESC, id DESC);
CREATE INDEX documents_tags_idx ON documents USING GIN (tags);
CREATE INDEX documents_source_idx ON documents (source);
