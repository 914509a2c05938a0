-- Generated from the models by `python -m mailsync.store.schema`; do not edit.
-- mailsync.store.db.create_schema runs it for a new SQLite store.
CREATE TABLE accounts (
	id INTEGER NOT NULL, 
	name VARCHAR(200) NOT NULL, 
	host VARCHAR(255) NOT NULL, 
	username VARCHAR(320) NOT NULL, 
	created_at DATETIME NOT NULL, 
	throttled_until DATETIME, 
	throttle_reason TEXT, 
	throttle_count INTEGER DEFAULT '0' NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (name)
);

CREATE TABLE bodies (
	sha256 VARCHAR(64) NOT NULL, 
	size BIGINT NOT NULL, 
	message_id VARCHAR(998), 
	data BLOB NOT NULL, 
	pack INTEGER, 
	pack_offset BIGINT, 
	headers_only BOOLEAN DEFAULT '0' NOT NULL, 
	PRIMARY KEY (sha256)
);

CREATE INDEX ix_bodies_message_id ON bodies (message_id);

CREATE TABLE channel_folders (
	id INTEGER NOT NULL, 
	channel VARCHAR(200) NOT NULL, 
	src_folder_id INTEGER NOT NULL, 
	dest_folder_id INTEGER NOT NULL, 
	src_name TEXT NOT NULL, 
	dest_name TEXT NOT NULL, 
	PRIMARY KEY (id), 
	CONSTRAINT uq_channel_folders_channel_src UNIQUE (channel, src_folder_id)
);

CREATE TABLE channel_pairs (
	id INTEGER NOT NULL, 
	channel VARCHAR(200) NOT NULL, 
	src_placement_id INTEGER NOT NULL, 
	dest_placement_id INTEGER, 
	sha256 VARCHAR(64) NOT NULL, 
	created_at DATETIME NOT NULL, 
	agreed_flags TEXT, 
	dest_sha256 VARCHAR(64), 
	src_folder_id INTEGER, 
	dest_folder_id INTEGER, 
	PRIMARY KEY (id), 
	CONSTRAINT uq_channel_pairs_channel_src UNIQUE (channel, src_placement_id)
);

CREATE TABLE crm_activities (
	id VARCHAR(32) NOT NULL, 
	contact_address VARCHAR(320) NOT NULL, 
	message_key VARCHAR(32) NOT NULL, 
	kind VARCHAR(20) NOT NULL, 
	timestamp VARCHAR(20) NOT NULL, 
	latency FLOAT, 
	digest VARCHAR(32) NOT NULL, 
	data TEXT NOT NULL, 
	PRIMARY KEY (id)
);

CREATE INDEX ix_crm_activities_contact_address ON crm_activities (contact_address);

CREATE INDEX ix_crm_activities_message_key ON crm_activities (message_key);

CREATE INDEX ix_crm_activities_timestamp ON crm_activities (timestamp);

CREATE TABLE crm_companies (
	id VARCHAR(32) NOT NULL, 
	domain VARCHAR(255) NOT NULL, 
	digest VARCHAR(32) NOT NULL, 
	data TEXT NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (domain)
);

CREATE TABLE crm_contacts (
	id VARCHAR(32) NOT NULL, 
	address VARCHAR(320) NOT NULL, 
	company_domain VARCHAR(255), 
	digest VARCHAR(32) NOT NULL, 
	data TEXT NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (address)
);

CREATE INDEX ix_crm_contacts_company_domain ON crm_contacts (company_domain);

CREATE TABLE crm_forgotten (
	hash VARCHAR(64) NOT NULL, 
	created_at DATETIME NOT NULL, 
	PRIMARY KEY (hash)
);

CREATE TABLE crm_messages (
	"key" VARCHAR(32) NOT NULL, 
	message_id VARCHAR(998), 
	date BIGINT, 
	from_address VARCHAR(320), 
	list_mailto BOOLEAN NOT NULL, 
	thread_id VARCHAR(32), 
	facts TEXT NOT NULL, 
	PRIMARY KEY ("key")
);

CREATE INDEX ix_crm_messages_from_address ON crm_messages (from_address);

CREATE INDEX ix_crm_messages_message_id ON crm_messages (message_id);

CREATE TABLE crm_outbox (
	id INTEGER NOT NULL, 
	sink VARCHAR(100) NOT NULL, 
	record_type VARCHAR(20) NOT NULL, 
	record_id VARCHAR(32) NOT NULL, 
	op VARCHAR(10) NOT NULL, 
	idempotency_key VARCHAR(64) NOT NULL, 
	payload TEXT NOT NULL, 
	state VARCHAR(10) NOT NULL, 
	attempts INTEGER NOT NULL, 
	next_attempt_at FLOAT NOT NULL, 
	lease_until FLOAT, 
	lease_owner VARCHAR(100), 
	last_error TEXT, 
	created_at FLOAT NOT NULL, 
	PRIMARY KEY (id)
);

CREATE INDEX ix_crm_outbox_record ON crm_outbox (record_id);

CREATE INDEX ix_crm_outbox_sink_state ON crm_outbox (sink, state, id);

CREATE TABLE crm_participants (
	message_key VARCHAR(32) NOT NULL, 
	address VARCHAR(320) NOT NULL, 
	PRIMARY KEY (message_key, address)
);

CREATE INDEX ix_crm_participants_address ON crm_participants (address);

CREATE TABLE crm_refs (
	message_key VARCHAR(32) NOT NULL, 
	ref_id VARCHAR(998) NOT NULL, 
	PRIMARY KEY (message_key, ref_id)
);

CREATE INDEX ix_crm_refs_ref_id ON crm_refs (ref_id);

CREATE TABLE crm_sink_refs (
	sink VARCHAR(100) NOT NULL, 
	record_id VARCHAR(32) NOT NULL, 
	remote_id VARCHAR(64) NOT NULL, 
	link_id VARCHAR(64), 
	PRIMARY KEY (sink, record_id)
);

CREATE TABLE crm_state (
	"key" VARCHAR(100) NOT NULL, 
	value TEXT NOT NULL, 
	PRIMARY KEY ("key")
);

CREATE TABLE watch_workers (
	id VARCHAR(200) NOT NULL, 
	host VARCHAR(255) NOT NULL, 
	pid INTEGER NOT NULL, 
	max_accounts INTEGER, 
	lease_ttl FLOAT NOT NULL, 
	started_at DATETIME NOT NULL, 
	heartbeat_at DATETIME NOT NULL, 
	PRIMARY KEY (id)
);

CREATE TABLE account_leases (
	account_id INTEGER NOT NULL, 
	worker VARCHAR(200), 
	generation BIGINT DEFAULT '0' NOT NULL, 
	acquired_at DATETIME, 
	expires_at DATETIME, 
	PRIMARY KEY (account_id), 
	FOREIGN KEY(account_id) REFERENCES accounts (id) ON DELETE CASCADE
);

CREATE INDEX ix_account_leases_worker ON account_leases (worker);

CREATE TABLE audit_events (
	id INTEGER NOT NULL, 
	account_id INTEGER NOT NULL, 
	run_id INTEGER, 
	at DATETIME NOT NULL, 
	kind VARCHAR(30) NOT NULL, 
	folder VARCHAR(1000), 
	uid BIGINT, 
	detail TEXT NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(account_id) REFERENCES accounts (id) ON DELETE CASCADE
);

CREATE INDEX ix_audit_events_account_id ON audit_events (account_id);

CREATE TABLE crm_marks (
	account_id INTEGER NOT NULL, 
	placement_mark BIGINT NOT NULL, 
	updated_at DATETIME, 
	PRIMARY KEY (account_id), 
	FOREIGN KEY(account_id) REFERENCES accounts (id) ON DELETE CASCADE
);

CREATE TABLE crm_sources (
	placement_id BIGINT NOT NULL, 
	account_id INTEGER NOT NULL, 
	folder_id INTEGER NOT NULL, 
	message_key VARCHAR(32) NOT NULL, 
	body_sha256 VARCHAR(64) NOT NULL, 
	role VARCHAR(10) NOT NULL, 
	draft BOOLEAN NOT NULL, 
	answered BOOLEAN NOT NULL, 
	internaldate BIGINT NOT NULL, 
	PRIMARY KEY (placement_id), 
	FOREIGN KEY(account_id) REFERENCES accounts (id) ON DELETE CASCADE
);

CREATE INDEX ix_crm_sources_account_id ON crm_sources (account_id);

CREATE INDEX ix_crm_sources_body_sha256 ON crm_sources (body_sha256);

CREATE INDEX ix_crm_sources_message_key ON crm_sources (message_key);

CREATE TABLE folders (
	id INTEGER NOT NULL, 
	account_id INTEGER NOT NULL, 
	name VARCHAR(1000) NOT NULL, 
	raw_name VARCHAR(1000) NOT NULL, 
	delimiter VARCHAR(1), 
	special_use VARCHAR(40), 
	mailboxid VARCHAR(255), 
	uidvalidity BIGINT, 
	uidnext BIGINT, 
	highestmodseq BIGINT, 
	messages BIGINT, 
	fetched_uid BIGINT NOT NULL, 
	status VARCHAR(20) NOT NULL, 
	status_reason TEXT, 
	last_synced_at DATETIME, 
	left_out_age INTEGER, 
	left_out_size INTEGER, 
	limits TEXT, 
	PRIMARY KEY (id), 
	CONSTRAINT uq_folders_account_raw UNIQUE (account_id, raw_name), 
	FOREIGN KEY(account_id) REFERENCES accounts (id) ON DELETE CASCADE
);

CREATE INDEX ix_folders_account_id ON folders (account_id);

CREATE TABLE gmail_messages (
	id INTEGER NOT NULL, 
	account_id INTEGER NOT NULL, 
	msgid VARCHAR(20) NOT NULL, 
	thrid VARCHAR(20), 
	body_sha256 VARCHAR(64) NOT NULL, 
	labels TEXT NOT NULL, 
	PRIMARY KEY (id), 
	CONSTRAINT uq_gmail_messages_account_msgid UNIQUE (account_id, msgid), 
	FOREIGN KEY(account_id) REFERENCES accounts (id) ON DELETE CASCADE
);

CREATE INDEX ix_gmail_messages_body ON gmail_messages (account_id, body_sha256);

CREATE TABLE mirror_files (
	id INTEGER NOT NULL, 
	account_id INTEGER NOT NULL, 
	placement_id INTEGER, 
	sha256 VARCHAR(64) NOT NULL, 
	folder VARCHAR(1000) NOT NULL, 
	name VARCHAR(600) NOT NULL, 
	unique_name VARCHAR(500) NOT NULL, 
	flags TEXT NOT NULL, 
	state VARCHAR(10) NOT NULL, 
	PRIMARY KEY (id), 
	CONSTRAINT uq_mirror_files_account_unique UNIQUE (account_id, unique_name), 
	FOREIGN KEY(account_id) REFERENCES accounts (id) ON DELETE CASCADE
);

CREATE INDEX ix_mirror_files_placement_id ON mirror_files (placement_id);

CREATE INDEX ix_mirror_files_state ON mirror_files (account_id, state, folder);

CREATE TABLE mirror_folders (
	id INTEGER NOT NULL, 
	account_id INTEGER NOT NULL, 
	folder_id INTEGER NOT NULL, 
	path VARCHAR(1000) NOT NULL, 
	held INTEGER, 
	held_reason TEXT, 
	PRIMARY KEY (id), 
	CONSTRAINT uq_mirror_folders_account_folder UNIQUE (account_id, folder_id), 
	FOREIGN KEY(account_id) REFERENCES accounts (id) ON DELETE CASCADE
);

CREATE TABLE mirror_snapshots (
	account_id INTEGER NOT NULL, 
	snapshot TEXT NOT NULL, 
	PRIMARY KEY (account_id), 
	FOREIGN KEY(account_id) REFERENCES accounts (id) ON DELETE CASCADE
);

CREATE TABLE sync_runs (
	id INTEGER NOT NULL, 
	account_id INTEGER NOT NULL, 
	started_at DATETIME NOT NULL, 
	finished_at DATETIME, 
	status VARCHAR(20) NOT NULL, 
	folders INTEGER NOT NULL, 
	new_messages INTEGER NOT NULL, 
	flag_changes INTEGER NOT NULL, 
	expunged INTEGER NOT NULL, 
	bytes_fetched BIGINT NOT NULL, 
	bodies_downloaded INTEGER DEFAULT '0' NOT NULL, 
	moves INTEGER DEFAULT '0' NOT NULL, 
	pushed INTEGER DEFAULT '0' NOT NULL, 
	conflicts INTEGER DEFAULT '0' NOT NULL, 
	error TEXT, 
	notes TEXT, 
	PRIMARY KEY (id), 
	FOREIGN KEY(account_id) REFERENCES accounts (id) ON DELETE CASCADE
);

CREATE INDEX ix_sync_runs_account_id ON sync_runs (account_id);

CREATE TABLE watch_state (
	account_id INTEGER NOT NULL, 
	connected BOOLEAN NOT NULL, 
	mode VARCHAR(10), 
	connections INTEGER NOT NULL, 
	last_event_at DATETIME, 
	last_event TEXT, 
	last_sync_at DATETIME, 
	lag_seconds FLOAT, 
	pending_since DATETIME, 
	last_error TEXT, 
	last_error_at DATETIME, 
	failing TEXT, 
	daemon_pid INTEGER, 
	started_at DATETIME, 
	heartbeat_at DATETIME, 
	PRIMARY KEY (account_id), 
	FOREIGN KEY(account_id) REFERENCES accounts (id) ON DELETE CASCADE
);

CREATE TABLE placements (
	id INTEGER NOT NULL, 
	folder_id INTEGER NOT NULL, 
	uid BIGINT, 
	body_sha256 VARCHAR(64) NOT NULL, 
	flags TEXT NOT NULL, 
	base_flags TEXT, 
	tombstone_run INTEGER, 
	modseq BIGINT, 
	internaldate VARCHAR(40) NOT NULL, 
	size BIGINT NOT NULL, 
	PRIMARY KEY (id), 
	CONSTRAINT uq_placements_folder_uid UNIQUE (folder_id, uid), 
	FOREIGN KEY(folder_id) REFERENCES folders (id) ON DELETE CASCADE, 
	FOREIGN KEY(body_sha256) REFERENCES bodies (sha256)
);

CREATE INDEX ix_placements_body ON placements (body_sha256);

CREATE INDEX ix_placements_tombstone ON placements (tombstone_run);

CREATE TABLE pending_ops (
	id INTEGER NOT NULL, 
	account_id INTEGER NOT NULL, 
	kind VARCHAR(20) NOT NULL, 
	folder_id INTEGER, 
	placement_id INTEGER, 
	args TEXT NOT NULL, 
	state VARCHAR(10) NOT NULL, 
	attempts INTEGER NOT NULL, 
	error TEXT, 
	created_at DATETIME NOT NULL, 
	updated_at DATETIME, 
	PRIMARY KEY (id), 
	FOREIGN KEY(account_id) REFERENCES accounts (id) ON DELETE CASCADE, 
	FOREIGN KEY(folder_id) REFERENCES folders (id) ON DELETE SET NULL, 
	FOREIGN KEY(placement_id) REFERENCES placements (id) ON DELETE SET NULL
);

CREATE INDEX ix_pending_ops_account_id ON pending_ops (account_id);

CREATE INDEX ix_pending_ops_placement_id ON pending_ops (placement_id);

CREATE INDEX ix_pending_ops_state ON pending_ops (state);

