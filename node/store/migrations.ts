/**
 * Schema migrations, applied in order at start. `PRAGMA user_version` holds how
 * many have run. Never edit a released migration: add a new one.
 */
export const MIGRATIONS: string[] = [
  // 1: messages in both directions, the outbox, per-conversation sequence state, contacts
  `
  CREATE TABLE messages (
    id            TEXT    NOT NULL,              -- UUID (16-byte wire id)
    peer          TEXT    NOT NULL,              -- the other side of the conversation
    direction     TEXT    NOT NULL CHECK (direction IN ('in', 'out')),
    seq           INTEGER NOT NULL,
    body          TEXT    NOT NULL,
    content_type  TEXT    NOT NULL,
    reply_to      TEXT,
    sent_at       INTEGER NOT NULL,              -- sender's clock, ms
    received_at   INTEGER,                       -- recipient's clock, ms (in) / ack time (out)
    created_at    INTEGER NOT NULL,              -- this node's clock when the row was written
    status        TEXT    NOT NULL,              -- out: queued|sending|delivered|failed; in: held|presented
    path          TEXT,                          -- direct|relayed, once known
    reason        TEXT,                          -- why a message failed
    position      INTEGER,                       -- place in history: set when sent, or when presented
    PRIMARY KEY (peer, direction, id)
  ) WITHOUT ROWID;
  CREATE UNIQUE INDEX messages_by_id ON messages (id, direction, peer);
  CREATE INDEX messages_by_position ON messages (peer, position);
  CREATE INDEX messages_held ON messages (peer, direction, status, seq);

  CREATE TABLE outbox (
    id              TEXT    NOT NULL PRIMARY KEY,
    peer            TEXT    NOT NULL,
    seq             INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    last_error      TEXT
  );
  CREATE INDEX outbox_due ON outbox (peer, seq);

  CREATE TABLE conversations (
    peer          TEXT    NOT NULL PRIMARY KEY,
    next_out_seq  INTEGER NOT NULL DEFAULT 1,   -- seq of the next message we send
    next_in_seq   INTEGER NOT NULL DEFAULT 1,   -- seq we present next
    gap_since     INTEGER                       -- when a held message first waited for a missing seq
  );

  -- seqs of inbound messages refused (TOO_LARGE, INVALID, BLOCKED): they fill their place in the order
  CREATE TABLE refused_seqs (
    peer  TEXT    NOT NULL,
    seq   INTEGER NOT NULL,
    PRIMARY KEY (peer, seq)
  ) WITHOUT ROWID;

  CREATE TABLE contacts (
    name        TEXT    NOT NULL PRIMARY KEY,
    peer        TEXT    NOT NULL,
    addrs       TEXT    NOT NULL DEFAULT '[]',  -- JSON array of multiaddrs from an invite
    created_at  INTEGER NOT NULL
  );
  CREATE INDEX contacts_by_peer ON contacts (peer);
  `,
  // 2: message requests (a stranger's messages wait for the user's decision) and the block list
  `
  ALTER TABLE messages ADD COLUMN request INTEGER NOT NULL DEFAULT 0;  -- 1: from a stranger, not accepted yet
  CREATE INDEX messages_requests ON messages (peer, created_at) WHERE request = 1;

  CREATE TABLE peer_states (
    peer   TEXT    NOT NULL PRIMARY KEY,
    state  TEXT    NOT NULL CHECK (state IN ('accepted', 'blocked')),
    since  INTEGER NOT NULL
  ) WITHOUT ROWID;
  `,
  // 3: an outbound row no longer says 'sending' (the outbox keeps that in memory):
  // rows an older parley left so when it stopped go back to the queue
  `
  UPDATE messages SET status = 'queued' WHERE direction = 'out' AND status = 'sending';
  `,
  // 4: read marks: the history position up to which the user has read each conversation.
  // History kept from before had no marks; it counts as read, or an upgrade would
  // greet the user with every message they ever got as unread
  `
  ALTER TABLE conversations ADD COLUMN read_position INTEGER NOT NULL DEFAULT 0;
  UPDATE conversations SET read_position = coalesce((SELECT max(position) FROM messages WHERE messages.peer = conversations.peer), 0);
  `,
  // 5: mailboxes. An outbound message left sealed in its recipient's mailbox is
  // 'stored' (and keeps its outbox row: direct delivery is still tried), until
  // when its deposit lasts; and the mailbox records of the people we write to
  // (which key to seal to, which relays to deposit on), as last verified
  `
  ALTER TABLE outbox ADD COLUMN stored_until INTEGER;  -- NULL: not in a mailbox
  CREATE TABLE mailbox_records (
    peer        TEXT    NOT NULL PRIMARY KEY,
    record      BLOB    NOT NULL,   -- the signed record, as received
    seq         INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
  ) WITHOUT ROWID;
  `,
  // 6: groups (protocols/group/README.md). A group message or membership change
  // goes to each member as an /im message of its own, a carrier: a `messages`
  // row with the payload, which takes the conversation's seq (so that the
  // outbox and the inbox order it) but never a history position (so that it
  // is in no one-to-one history, preview or unread count). Each group's log
  // of signed ops, its messages, and those that wait for ops not known yet
  `
  ALTER TABLE messages ADD COLUMN group_payload BLOB;  -- set: a carrier, never in the history
  CREATE TABLE groups (
    id          TEXT    NOT NULL PRIMARY KEY,    -- hex SHA-256 of the create op
    joined_at   INTEGER NOT NULL,
    next_seq    INTEGER NOT NULL DEFAULT 1,      -- this node's next seq as a sender in the group
    lamport     INTEGER NOT NULL DEFAULT 0       -- the highest Lamport time seen in the group
  ) WITHOUT ROWID;
  CREATE TABLE group_ops (
    group_id    TEXT    NOT NULL,
    hash        TEXT    NOT NULL,                -- hex SHA-256 of op
    op          BLOB    NOT NULL,                -- the encoded Op, as signed
    signature   BLOB    NOT NULL,
    PRIMARY KEY (group_id, hash)
  ) WITHOUT ROWID;
  CREATE TABLE group_messages (
    group_id      TEXT    NOT NULL,
    sender        TEXT    NOT NULL,
    seq           INTEGER NOT NULL,              -- the sender's seq in the group: the exactly-once key with the two above
    id            TEXT    NOT NULL,              -- hex, 16 bytes
    lamport       INTEGER NOT NULL,
    body          TEXT    NOT NULL,
    content_type  TEXT    NOT NULL,
    sent_at       INTEGER NOT NULL,
    received_at   INTEGER NOT NULL,
    path          TEXT,                          -- how it came (NULL: this node's own)
    PRIMARY KEY (group_id, sender, seq)
  ) WITHOUT ROWID;
  CREATE INDEX group_messages_order ON group_messages (group_id, lamport, sender, seq);
  -- payloads whose ops are not known yet: looked at again when the log grows
  CREATE TABLE group_pending (
    group_id     TEXT    NOT NULL,
    received_at  INTEGER NOT NULL,
    sender       TEXT    NOT NULL,               -- the carrier's authenticated sender
    path         TEXT    NOT NULL,
    payload      BLOB    NOT NULL
  );
  CREATE INDEX group_pending_by_group ON group_pending (group_id);
  `,
  // 7: open gaps found without reading every conversation: the gap timer asks
  // for the oldest after every inbound batch, and a store holds thousands of
  // conversations, almost none with a gap
  `
  CREATE INDEX conversations_gaps ON conversations (gap_since) WHERE gap_since IS NOT NULL;
  `,
  // 8: files offered and received (/parley/file/1.0.0). A row's id is its offer
  // message's id; the content itself lives in files under the data dir, never here
  `
  CREATE TABLE files (
    id          TEXT    NOT NULL,   -- the offer message's id
    peer        TEXT    NOT NULL,   -- who offered it (in) or to whom (out)
    direction   TEXT    NOT NULL CHECK (direction IN ('in', 'out')),
    name        TEXT    NOT NULL,
    type        TEXT    NOT NULL,   -- media type
    size        INTEGER NOT NULL,
    sha256      TEXT    NOT NULL,   -- hex, of the whole content
    root        TEXT    NOT NULL,   -- hex, SHA-256 of the chunk hashes
    hashes      BLOB,               -- the chunk hashes: out, computed at the offer; in, once fetched and verified
    path        TEXT,               -- out: the file served; in: where the content is once complete
    mtime       INTEGER,            -- out: the served file's mtime at the offer (ms)
    owned       INTEGER NOT NULL DEFAULT 0,  -- out: path is parley's copy, deleted when the offer ends
    verified    INTEGER NOT NULL DEFAULT 0,  -- in: chunks verified and on disk (fsynced), from the first
    status      TEXT    NOT NULL,
    reason      TEXT,
    thumbnail_type TEXT,            -- the offer's preview image, if it had one (at most 8 KiB)
    thumbnail   BLOB,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (id, direction, peer)
  ) WITHOUT ROWID;
  CREATE INDEX files_by_update ON files (updated_at);
  -- the offers received, apart from the rest of the history: at start the node
  -- looks for one a crash left without its files row (FILE_OFFER_TYPE)
  CREATE INDEX messages_file_offers ON messages (created_at)
    WHERE direction = 'in' AND content_type = 'application/vnd.parley.file-offer+json';
  `,
  // 9: costs that grew with the store, kept as counts. The last history
  // position handed out, in one row that each commit handing out positions
  // moves up: start-up reads it instead of seeking the end of every
  // conversation (no index leads with position). And how many messages each
  // conversation holds for an earlier seq: the limit on them is checked for
  // every message held, and counting them walked every one. And the files by
  // direction and status: an offer received looks for a complete copy of its
  // content and adds up the quota, which read every file ever offered
  `
  CREATE TABLE history_end (
    id             INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    last_position  INTEGER NOT NULL
  );
  INSERT INTO history_end (id, last_position) SELECT 1, coalesce(max(position), 0) FROM messages;
  ALTER TABLE conversations ADD COLUMN held INTEGER NOT NULL DEFAULT 0;  -- inbound messages with status 'held'
  UPDATE conversations SET held = (SELECT count(*) FROM messages
    WHERE messages.peer = conversations.peer AND direction = 'in' AND status = 'held');
  CREATE INDEX files_by_status ON files (direction, status, sha256);
  `,
  // 10: a read mark per group, as an arrival time (received_at, this node's
  // clock): a message that arrives late, with an old Lamport time, is still
  // unread. Groups that exist already start with everything read
  `
  ALTER TABLE groups ADD COLUMN read_at INTEGER NOT NULL DEFAULT 0;
  UPDATE groups SET read_at = coalesce((SELECT max(received_at) FROM group_messages m WHERE m.group_id = groups.id), 0);
  CREATE INDEX group_messages_arrival ON group_messages (group_id, received_at);
  `,
  // 11: the history index holds only the messages that have a place in the
  // history. A held message (and a group carrier) has none: each went into the
  // index under (peer, NULL), ordered by its random id, so a batch of held
  // messages wrote as many scattered index pages as messages, where messages
  // in order append to the index's end
  `
  DROP INDEX messages_by_position;
  CREATE INDEX messages_by_position ON messages (peer, position) WHERE position IS NOT NULL;
  `,
  // 12: fewer pages written per message (each one a page in the WAL). The
  // index of held messages holds only the held ones, the only rows its
  // queries ask for (inbound, status 'held'): every message sent or shown
  // went into it too, and moved in it when delivered (the status is one of
  // its columns). And the outbox is keyed by its message id without a rowid:
  // a rowid table with a unique id wrote three b-trees for each message
  // queued and again when it left (the table, the id's index, outbox_due),
  // now two
  `
  DROP INDEX messages_held;
  CREATE INDEX messages_held ON messages (peer, direction, status, seq) WHERE direction = 'in' AND status = 'held';

  CREATE TABLE outbox_keyed (
    id              TEXT    NOT NULL PRIMARY KEY,
    peer            TEXT    NOT NULL,
    seq             INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    last_error      TEXT,
    stored_until    INTEGER                         -- NULL: not in a mailbox
  ) WITHOUT ROWID;
  INSERT INTO outbox_keyed (id, peer, seq, attempts, next_attempt_at, last_error, stored_until)
    SELECT id, peer, seq, attempts, next_attempt_at, last_error, stored_until FROM outbox;
  DROP TABLE outbox;
  ALTER TABLE outbox_keyed RENAME TO outbox;
  CREATE INDEX outbox_due ON outbox (peer, seq);
  `,
  // 13: fewer pages and statements for each message. The outbox is the
  // outbound messages that have a next attempt: their retry state is kept on
  // their own rows, found on a partial index of just those rows, where an
  // outbox table of its own wrote two more b-trees for each message queued
  // and again when it left. And the last history position is kept on the
  // conversation that each commit handing one out updates anyway: the
  // history_end row was one more page and statement in each of them
  `
  ALTER TABLE messages ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
  ALTER TABLE messages ADD COLUMN next_attempt_at INTEGER;  -- set: in the outbox (outbound, neither delivered nor failed)
  ALTER TABLE messages ADD COLUMN last_error TEXT;
  ALTER TABLE messages ADD COLUMN stored_until INTEGER;     -- until when a mailbox keeps it sealed (NULL: none does)
  UPDATE messages SET attempts = o.attempts, next_attempt_at = o.next_attempt_at, last_error = o.last_error, stored_until = o.stored_until
    FROM outbox o WHERE messages.peer = o.peer AND messages.direction = 'out' AND messages.id = o.id;
  DROP TABLE outbox;
  CREATE INDEX messages_outbox ON messages (peer, seq) WHERE next_attempt_at IS NOT NULL;

  ALTER TABLE conversations ADD COLUMN last_position INTEGER NOT NULL DEFAULT 0;  -- the history's last position as of this conversation's last write of one
  UPDATE conversations SET last_position = coalesce((SELECT max(position) FROM messages m WHERE m.peer = conversations.peer AND m.position IS NOT NULL), 0);
  -- positions of messages deleted since are never given again (a read mark may be past them): the end goes to one conversation
  UPDATE conversations SET last_position = max(last_position, (SELECT last_position FROM history_end)) WHERE peer = (SELECT min(peer) FROM conversations);
  DROP TABLE history_end;
  `
]

export const SCHEMA_VERSION = MIGRATIONS.length
