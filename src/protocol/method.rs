//! Every method name of the MCP revisions the bridge serves (2024-11-05 to 2026-07-28),
//! requests and notifications, as constants: code compares against these, never a literal.

pub(crate) const INITIALIZE: &str = "initialize";
pub(crate) const PING: &str = "ping";
pub(crate) const TOOLS_LIST: &str = "tools/list";
pub(crate) const TOOLS_CALL: &str = "tools/call";
pub(crate) const RESOURCES_LIST: &str = "resources/list";
pub(crate) const RESOURCES_TEMPLATES_LIST: &str = "resources/templates/list";
pub(crate) const RESOURCES_READ: &str = "resources/read";
pub(crate) const RESOURCES_SUBSCRIBE: &str = "resources/subscribe";
pub(crate) const RESOURCES_UNSUBSCRIBE: &str = "resources/unsubscribe";
pub(crate) const PROMPTS_LIST: &str = "prompts/list";
pub(crate) const PROMPTS_GET: &str = "prompts/get";
pub(crate) const COMPLETION_COMPLETE: &str = "completion/complete";
pub(crate) const LOGGING_SET_LEVEL: &str = "logging/setLevel";
pub(crate) const SAMPLING_CREATE_MESSAGE: &str = "sampling/createMessage";
pub(crate) const ELICITATION_CREATE: &str = "elicitation/create";
pub(crate) const ROOTS_LIST: &str = "roots/list";
pub(crate) const SERVER_DISCOVER: &str = "server/discover";
pub(crate) const SUBSCRIPTIONS_LISTEN: &str = "subscriptions/listen";
pub(crate) const TASKS_GET: &str = "tasks/get";
pub(crate) const TASKS_RESULT: &str = "tasks/result";
pub(crate) const TASKS_LIST: &str = "tasks/list";
pub(crate) const TASKS_CANCEL: &str = "tasks/cancel";
pub(crate) const TASKS_UPDATE: &str = "tasks/update";
pub(crate) const INITIALIZED: &str = "notifications/initialized";
pub(crate) const CANCELLED: &str = "notifications/cancelled";
pub(crate) const PROGRESS: &str = "notifications/progress";
pub(crate) const MESSAGE: &str = "notifications/message";
pub(crate) const RESOURCES_UPDATED: &str = "notifications/resources/updated";
pub(crate) const RESOURCES_LIST_CHANGED: &str = "notifications/resources/list_changed";
pub(crate) const TOOLS_LIST_CHANGED: &str = "notifications/tools/list_changed";
pub(crate) const PROMPTS_LIST_CHANGED: &str = "notifications/prompts/list_changed";
pub(crate) const ROOTS_LIST_CHANGED: &str = "notifications/roots/list_changed";
pub(crate) const TASKS_STATUS: &str = "notifications/tasks/status";
pub(crate) const ELICITATION_COMPLETE: &str = "notifications/elicitation/complete";
pub(crate) const SUBSCRIPTIONS_ACKNOWLEDGED: &str = "notifications/subscriptions/acknowledged";

/// All of them: the closed set metric labels come from.
pub(crate) const ALL: &[&str] = &[
    INITIALIZE,
    PING,
    TOOLS_LIST,
    TOOLS_CALL,
    RESOURCES_LIST,
    RESOURCES_TEMPLATES_LIST,
    RESOURCES_READ,
    RESOURCES_SUBSCRIBE,
    RESOURCES_UNSUBSCRIBE,
    PROMPTS_LIST,
    PROMPTS_GET,
    COMPLETION_COMPLETE,
    LOGGING_SET_LEVEL,
    SAMPLING_CREATE_MESSAGE,
    ELICITATION_CREATE,
    ROOTS_LIST,
    SERVER_DISCOVER,
    SUBSCRIPTIONS_LISTEN,
    TASKS_GET,
    TASKS_RESULT,
    TASKS_LIST,
    TASKS_CANCEL,
    TASKS_UPDATE,
    INITIALIZED,
    CANCELLED,
    PROGRESS,
    MESSAGE,
    RESOURCES_UPDATED,
    RESOURCES_LIST_CHANGED,
    TOOLS_LIST_CHANGED,
    PROMPTS_LIST_CHANGED,
    ROOTS_LIST_CHANGED,
    TASKS_STATUS,
    ELICITATION_COMPLETE,
    SUBSCRIPTIONS_ACKNOWLEDGED,
];

/// Whether a notification method is a list change.
pub(crate) fn is_list_change(method: &str) -> bool {
    matches!(method, TOOLS_LIST_CHANGED | PROMPTS_LIST_CHANGED | RESOURCES_LIST_CHANGED)
}
