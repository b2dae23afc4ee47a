//! The call flow: dialplan files and the pure flow interpreter.

pub mod calendar;
pub mod dialplan;
pub mod graph;
pub mod interpreter;

pub use calendar::Calendar;
pub use dialplan::{Dialplan, DialplanError, parse_dialplan};
pub use interpreter::{
    FlowAction, FlowConfig, FlowEvent, FlowRecord, Interpreter, LedgerUnavailable, PlayItem,
    Speller,
};
