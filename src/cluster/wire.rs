//! What instances say to each other over Redis pub/sub. Each instance listens on its own
//! channel (`mcpb:inst:{id}`); requests to a session's owner and the frames the owner sends back
//! to the instance holding the client's stream travel as these envelopes, in JSON.

use serde::{Deserialize, Serialize};

/// One message on an instance channel.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub(crate) enum Envelope {
    /// A request for the owner of `sid`; the answer goes to `from` as a [`Envelope::Reply`].
    Request {
        from: String,
        req: u64,
        sid: String,
        body: Request,
        /// Not served after this (Unix time in ms; 0: no bound): its sender gives up a little
        /// later and may tell its client to try again, which must not make it served twice.
        #[serde(default)]
        until: u64,
    },
    Reply {
        req: u64,
        result: Result<Reply, Failure>,
    },
    /// An event for the client stream registered under `token` on the receiving instance.
    Frame {
        token: u64,
        seq: u64,
        data: String,
    },
    /// The owner closed the stream registered under `token`.
    Close {
        token: u64,
        reason: String,
    },
    /// The holder's client went away from the stream it held for the owner.
    Detached {
        sid: String,
        stream: u32,
        token: u64,
    },
    /// Sent by an instance to itself now and then: when one does not come back, its inbox
    /// subscription is gone (Redis drops a sharded subscription whose slot moved) and it
    /// subscribes again.
    Probe {
        nonce: u64,
    },
}

impl Envelope {
    /// Requests and replies between instances (and probes) go out on their own queue, never
    /// behind the journal writes, which may be retried for seconds while Redis fails over.
    pub(crate) fn is_rpc(&self) -> bool {
        matches!(self, Envelope::Request { .. } | Envelope::Reply { .. } | Envelope::Probe { .. })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(crate) enum Request {
    /// Deliver client messages; requests answer on `stream`.
    Send { stream: u32, messages: Vec<String> },
    /// Open a POST stream for `requests` requests, held by the sender under `token`, then send.
    Open { requests: usize, json: bool, token: u64, messages: Vec<String> },
    /// Attach the sender's client (under `token`) to `stream`, replaying after `after`.
    Attach { stream: u32, after: Option<u64>, replace: bool, token: u64 },
    /// End the session.
    End { reason: String },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "r", rename_all = "snake_case")]
pub(crate) enum Reply {
    Sent,
    Opened { stream: u32, priming: Option<u64>, polling: bool },
    Attached { stream: u32, replay: Vec<(u64, String)>, done: bool, polling: bool },
    Ended,
}

/// Why the owner could not do what was asked.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Failure {
    /// A second standalone stream was refused (409), not a missing session (404).
    pub conflict: bool,
    /// The receiver does not hold the session (any more): look up the owner again.
    #[serde(default)]
    pub moved: bool,
    /// The session's upstream is not taking messages (503), not a missing session.
    #[serde(default)]
    pub busy: bool,
    /// The owner could not read the forwarded messages (an inter-instance protocol error,
    /// 502), not a missing session.
    #[serde(default)]
    pub unreadable: bool,
    pub message: String,
}

impl Failure {
    pub(crate) fn new(message: impl ToString) -> Failure {
        Failure { conflict: false, moved: false, busy: false, unreadable: false, message: message.to_string() }
    }

    /// A failed send: busy when the upstream's queue stayed full.
    pub(crate) fn send(e: crate::session::SendError) -> Failure {
        Failure { busy: matches!(e, crate::session::SendError::Busy(_)), ..Failure::new(e) }
    }
}
