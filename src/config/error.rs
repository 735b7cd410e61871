//! What a configuration that cannot be used is: every error names the file, and the key and
//! the reason where there is one.

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Read { file: String, source: std::io::Error },
    #[error("{file}: {message}")]
    Parse { file: String, message: String },
    #[error("{file}: key `{key}`: {reason}")]
    Invalid { file: String, key: String, reason: String },
}
