//! Limit keys kept beside `config.rs` (which is full): the cap on a session's requests in flight.

/// `limits.max_pending_per_session` when unset: far more than a client keeps in flight at once
/// (the SDKs send one request per call), few enough to keep one session's pending map small.
pub(crate) const DEFAULT_MAX_PENDING_PER_SESSION: usize = 1024;

/// Validates `limits.max_pending_per_session`: at least 1.
pub(crate) fn max_pending_per_session(v: Option<usize>) -> Result<usize, String> {
    match v {
        Some(0) => Err("must be at least 1: a session with no room for a request cannot be used".into()),
        Some(n) => Ok(n),
        None => Ok(DEFAULT_MAX_PENDING_PER_SESSION),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn zero_is_refused_and_unset_is_the_default() {
        assert!(super::max_pending_per_session(Some(0)).is_err());
        assert_eq!(super::max_pending_per_session(Some(3)), Ok(3));
        assert_eq!(super::max_pending_per_session(None), Ok(super::DEFAULT_MAX_PENDING_PER_SESSION));
    }
}
