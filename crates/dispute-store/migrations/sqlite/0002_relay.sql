-- Where each relay has published up to: the rowid of the last event (SQLite commits one
-- writer at a time, so rowid order is commit order).
CREATE TABLE relay_checkpoints
(
    name     text    PRIMARY KEY,
    xid      integer NOT NULL,
    position integer NOT NULL
) STRICT;
