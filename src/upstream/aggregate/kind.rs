//! The four lists an aggregate merges, and what each is called on the wire.

use crate::protocol::method;

/// The four lists an aggregate merges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Kind {
    Tools,
    Prompts,
    Resources,
    Templates,
}

impl Kind {
    pub(super) fn of_list(method: &str) -> Option<Kind> {
        match method {
            method::TOOLS_LIST => Some(Kind::Tools),
            method::PROMPTS_LIST => Some(Kind::Prompts),
            method::RESOURCES_LIST => Some(Kind::Resources),
            method::RESOURCES_TEMPLATES_LIST => Some(Kind::Templates),
            _ => None,
        }
    }

    pub(super) fn of_change(method: &str) -> Option<Kind> {
        match method {
            method::TOOLS_LIST_CHANGED => Some(Kind::Tools),
            method::PROMPTS_LIST_CHANGED => Some(Kind::Prompts),
            method::RESOURCES_LIST_CHANGED => Some(Kind::Resources),
            _ => None,
        }
    }

    pub(super) fn method(self) -> &'static str {
        match self {
            Kind::Tools => method::TOOLS_LIST,
            Kind::Prompts => method::PROMPTS_LIST,
            Kind::Resources => method::RESOURCES_LIST,
            Kind::Templates => method::RESOURCES_TEMPLATES_LIST,
        }
    }

    /// The result's member that holds the items.
    pub(super) fn field(self) -> &'static str {
        match self {
            Kind::Tools => "tools",
            Kind::Prompts => "prompts",
            Kind::Resources => "resources",
            Kind::Templates => "resourceTemplates",
        }
    }

    /// The capability a member must have to be asked.
    pub(super) fn capability(self) -> &'static str {
        match self {
            Kind::Tools => "tools",
            Kind::Prompts => "prompts",
            Kind::Resources | Kind::Templates => "resources",
        }
    }

    /// The key items are merged by.
    pub(super) fn key(self) -> &'static str {
        match self {
            Kind::Tools | Kind::Prompts => "name",
            Kind::Resources => "uri",
            Kind::Templates => "uriTemplate",
        }
    }
}
