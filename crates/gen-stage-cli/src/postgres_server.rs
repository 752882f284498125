//! Where the connector rows and the demo's `--source postgres` find PostgreSQL.

/// The server: `GEN_STAGE_POSTGRES_URL`, or the loopback default.
pub(crate) fn url() -> String {
    std::env::var("GEN_STAGE_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}
