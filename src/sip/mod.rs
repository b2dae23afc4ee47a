//! SIP (RFC 3261) as sans-IO state machines: wire framing, transactions,
//! dialogs and the user-agent endpoint.
