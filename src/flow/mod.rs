//! The call flow: dialplan files and the pure flow interpreter.
