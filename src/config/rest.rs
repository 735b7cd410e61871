//! A server's `[servers.NAME.rest]` table: how its tools behave when called over the bridge's
//! REST endpoints (`/rest/{server}/…`), whose callers cannot answer a server's questions.

use serde::Deserialize;

/// What a REST call does when its tool asks the caller something (sampling, elicitation,
/// roots), which a plain HTTP caller cannot answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnInput {
    /// `on_input = "error"` (the default): the call ends with 409 and is cancelled upstream.
    #[default]
    Error,
    /// `on_input = "decline"`: the question is declined (an elicitation answers `decline`,
    /// sampling gets an error, roots an empty list) and the call goes on.
    Decline,
}

/// The validated `rest` table of a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rest {
    pub on_input: OnInput,
}

/// `rest = { on_input = "…" }` as written in the file.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RestModel {
    on_input: Option<String>,
}

impl RestModel {
    /// The table checked; `Err((key, reason))` names the key under the server's own.
    pub(crate) fn validate(self) -> Result<Rest, (&'static str, String)> {
        let on_input = match self.on_input.as_deref() {
            None | Some("error") => OnInput::Error,
            Some("decline") => OnInput::Decline,
            Some(o) => return Err(("rest.on_input", format!("`{o}` is not `error` or `decline`"))),
        };
        Ok(Rest { on_input })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_input_values() {
        let m: RestModel = toml::from_str("on_input = \"decline\"").unwrap();
        assert_eq!(m.validate().unwrap().on_input, OnInput::Decline);
        assert_eq!(RestModel::default().validate().unwrap().on_input, OnInput::Error);
        let bad: RestModel = toml::from_str("on_input = \"ask\"").unwrap();
        assert!(bad.validate().unwrap_err().1.contains("`ask`"));
        assert!(toml::from_str::<RestModel>("other = 1").is_err());
    }
}
