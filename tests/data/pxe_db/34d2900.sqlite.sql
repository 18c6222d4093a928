-- Every statement pxe/db.py of commit 34d2900 ran when it started on an empty sqlite database
-- (made by tests/data/pxe_db/make_legacy_dumps.py; replayed by tests/test_pxe_db_migrations.py)
-- Statements end with a semicolon and a blank line.

CREATE TABLE schema_version (
	version INTEGER NOT NULL, 
	PRIMARY KEY (version)
);

CREATE TABLE images (
	name VARCHAR(128) NOT NULL, 
	sha256 VARCHAR(64) NOT NULL, 
	size BIGINT NOT NULL, 
	filename VARCHAR(160) NOT NULL, 
	manifest JSON NOT NULL, 
	created_at FLOAT NOT NULL, 
	PRIMARY KEY (name)
);

CREATE TABLE deployments (
	id VARCHAR(36) NOT NULL, 
	mac VARCHAR(17) NOT NULL, 
	open_mac VARCHAR(17), 
	idempotency_key VARCHAR(200), 
	request_sha256 VARCHAR(64) NOT NULL, 
	image_name VARCHAR(128) NOT NULL, 
	request JSON NOT NULL, 
	storage JSON, 
	state VARCHAR(16) NOT NULL, 
	phase VARCHAR(16), 
	message TEXT, 
	error TEXT, 
	bytes_done BIGINT, 
	bytes_total BIGINT, 
	stream_started_at FLOAT, 
	token_hash VARCHAR(64), 
	agent_address VARCHAR(64), 
	root_uuid VARCHAR(64), 
	log TEXT, 
	created_at FLOAT NOT NULL, 
	updated_at FLOAT NOT NULL, 
	last_seen_at FLOAT, 
	installed_at FLOAT, 
	check_after FLOAT, 
	check_message TEXT, 
	PRIMARY KEY (id), 
	UNIQUE (open_mac), 
	UNIQUE (idempotency_key)
);

CREATE INDEX ix_deployments_mac ON deployments (mac);

CREATE INDEX ix_deployments_image_name ON deployments (image_name);

CREATE INDEX ix_deployments_state ON deployments (state);

CREATE TABLE api_tokens (
	id VARCHAR(16) NOT NULL, 
	scope VARCHAR(8) NOT NULL, 
	secret_sha256 VARCHAR(64) NOT NULL, 
	comment VARCHAR(200), 
	created_at FLOAT NOT NULL, 
	revoked BOOLEAN NOT NULL, 
	PRIMARY KEY (id)
);

CREATE TABLE events (
	id INTEGER NOT NULL, 
	deployment_id VARCHAR(36) NOT NULL, 
	time FLOAT NOT NULL, 
	state VARCHAR(16) NOT NULL, 
	phase VARCHAR(16), 
	message TEXT, 
	bytes_done BIGINT, 
	bytes_total BIGINT, 
	PRIMARY KEY (id), 
	FOREIGN KEY(deployment_id) REFERENCES deployments (id)
);

CREATE INDEX ix_events_deployment_id ON events (deployment_id);

INSERT INTO schema_version (version) VALUES (1);

