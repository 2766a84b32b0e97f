//! The open-file limit. Every client connection, database connection and outgoing LLM
//! request holds a file descriptor, and the usual default soft limit (1,024) is far below
//! the hard limit a process may raise itself to.

/// Raises the soft `RLIMIT_NOFILE` to the hard limit and logs the new value; call it once
/// at start-up, after logging is set up. A failure is logged and the process goes on with
/// the limit it has.
pub fn raise_limit() {
    match raise_soft_to_hard() {
        Ok(Some((from, to))) => tracing::info!(from, to, "open file limit raised"),
        Ok(None) => {}
        Err(error) => tracing::warn!(%error, "open file limit could not be raised"),
    }
}

/// `(old soft limit, new soft limit)` when it was raised; `None` when it already was the
/// hard limit.
fn raise_soft_to_hard() -> std::io::Result<Option<(u64, u64)>> {
    let (soft, hard) = rlimit::Resource::NOFILE.get()?;
    if soft >= hard {
        return Ok(None);
    }
    let raised = rlimit::increase_nofile_limit(hard)?;
    Ok(Some((soft, raised)))
}
