//! Integration tests: the real `patron` binary against a real SQLite file and,
//! when `PATRON_TEST_POSTGRES_URL` is set, a fresh PostgreSQL database per test.

mod imap_server;
mod smtp_server;
mod support;

mod ab_winner;
mod browser;
mod campaigns;
mod config;
mod consent;
mod daemon;
mod delivery;
mod delivery_faults;
mod dkim;
mod feed_folder;
mod feed_sql;
mod feedback;
mod generate;
mod http_limits;
mod import_bad_input;
mod import_data;
mod import_limits;
mod import_mutations;
mod loyalty;
mod message_limits;
mod migrate;
mod privacy;
mod reports;
mod scoring;
mod segments;
mod send_windows;
mod sequences;
mod staleness;
mod ui;
mod webhooks;
